"""MXNet's OpenMP threads: one per physical core.

Without ``OMP_NUM_THREADS``, MXNet 1.9 on x86 runs half as many OpenMP threads as there are
processors, assuming two hardware threads per core. On machines without SMT (most cloud VMs,
this project's 2-core CI machine) that leaves half the cores idle: training runs ~1.5x
slower. MXNet reads the setting once, when it is imported, so :func:`configure` runs from
``gluon_bertft/__init__.py`` before anything imports ``mxnet``.

``GLUON_BERTFT_THREADS``: unset or ``cores`` (one thread per physical core), a number, or
``mxnet`` (leave MXNet's default). A user's own ``OMP_NUM_THREADS`` or
``MXNET_OMP_MAX_THREADS`` always wins.
"""
import os
import sys

ENV = 'GLUON_BERTFT_THREADS'
configured = None  # the thread count configure() set, or None if it left the setting alone


def physical_cores(cpuinfo='/proc/cpuinfo'):
    """Physical cores among the processors this process may run on (``None`` if unknown)."""
    try:
        allowed = os.sched_getaffinity(0)
        with open(cpuinfo) as f:
            blocks = f.read().strip().split('\n\n')
    except (AttributeError, OSError):
        return None
    cores = set()
    for block in blocks:
        fields = dict(line.split(':', 1) for line in block.splitlines() if ':' in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if 'processor' not in fields or int(fields['processor']) not in allowed:
            continue
        cores.add((fields.get('physical id'), fields.get('core id', fields['processor'])))
    return len(cores) or None


def configure(environ=os.environ, modules=sys.modules):
    """Set ``OMP_NUM_THREADS`` for MXNet as :data:`ENV` asks; returns the count set or ``None``."""
    global configured
    choice = environ.get(ENV, 'cores').strip().lower()
    if ('OMP_NUM_THREADS' in environ or 'MXNET_OMP_MAX_THREADS' in environ
            or 'mxnet' in modules or choice == 'mxnet'):
        return None
    if choice == 'cores':
        count = physical_cores()
        if count is None:
            return None
    elif choice.isdigit() and int(choice) > 0:
        count = int(choice)
    else:  # at import: an error here would come before the CLI can print one
        sys.stderr.write(f'warning: {ENV}={environ[ENV][:40]!r} is not cores, mxnet or a positive '
                         'number; using one thread per core\n')
        count = physical_cores()
        if count is None:
            return None
    environ['OMP_NUM_THREADS'] = str(count)
    configured = count
    return count
