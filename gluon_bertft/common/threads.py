"""MXNet's OpenMP threads: one per physical core.

Without ``OMP_NUM_THREADS``, MXNet 1.9 on x86 runs half as many OpenMP threads as there are
processors, assuming two hardware threads per core. On machines without SMT (most cloud VMs,
this project's 2-core CI machine) that leaves half the cores idle: training runs ~1.5x
slower. MXNet reads the setting once, when it is imported, so :func:`configure` runs from
``gluon_bertft/__init__.py`` before anything imports ``mxnet``.

Where ``mxnet`` was imported first (a notebook that starts with ``from mxnet import np``),
:func:`set_loaded_mxnet` raises MXNet's thread cap at run time; its CPU worker threads take
the cap when they start, so this works unless MXNet has already run an operator, in which
case one warning says how to fix it.

``GLUON_BERTFT_THREADS``: unset or ``cores`` (one thread per physical core), a number, or
``mxnet`` (leave MXNet's default). A user's own ``OMP_NUM_THREADS`` or
``MXNET_OMP_MAX_THREADS`` always wins.

Busy machines: MXNet and its OpenBLAS run on libgomp, whose idle threads spin
``GOMP_SPINCOUNT`` times (300,000 by default) before they sleep. Two trainings on the same cores
then spend them spinning. :func:`configure_spin` sets ``GOMP_SPINCOUNT`` to :data:`SPIN` (the
measured choice: ``docs/speed.md``) before libgomp is loaded; ``GLUON_BERTFT_SPIN``: a number,
or ``libgomp`` (leave libgomp's default). A user's ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``
always wins.
"""
import os
import sys

ENV = 'GLUON_BERTFT_THREADS'
SPIN_ENV = 'GLUON_BERTFT_SPIN'
# more than 4 OpenMP threads a logical CPU only contend; far more abort the process (99999 did)
MAX_THREADS = 4 * (os.cpu_count() or 1)
SPIN = 3000  # GOMP_SPINCOUNT, measured: benchmarks/bench_busy.py, docs/speed.md
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


def libgomp_loaded(maps='/proc/self/maps'):
    """Whether this process has loaded libgomp already (it reads its settings when loaded)."""
    try:
        with open(maps) as f:
            return 'libgomp' in f.read()
    except OSError:
        return False


def configure_spin(environ=os.environ):
    """Set ``GOMP_SPINCOUNT`` as :data:`SPIN_ENV` asks, unless the user chose a wait policy or
    libgomp is loaded already; returns the count set or ``None``."""
    choice = environ.get(SPIN_ENV, str(SPIN)).strip().lower()
    if 'GOMP_SPINCOUNT' in environ or 'OMP_WAIT_POLICY' in environ or choice == 'libgomp' \
            or libgomp_loaded():
        return None
    if not choice.isdecimal():
        sys.stderr.write(f'warning: {SPIN_ENV}={environ[SPIN_ENV][:40]!r} is not a number or '
                         f'libgomp; using {SPIN}\n')
        choice = str(SPIN)
    environ['GOMP_SPINCOUNT'] = choice
    return int(choice)


def configure(environ=os.environ, modules=sys.modules):
    """Set ``OMP_NUM_THREADS`` for MXNet as :data:`ENV` asks; returns the count set or ``None``."""
    global configured
    choice = environ.get(ENV, 'cores').strip().lower()
    if 'OMP_NUM_THREADS' in environ or 'MXNET_OMP_MAX_THREADS' in environ or choice == 'mxnet':
        return None
    if choice == 'cores':
        count = physical_cores()
        if count is None:
            return None
    elif choice.isdecimal() and 0 < int(choice) <= MAX_THREADS:
        count = int(choice)
    elif choice.isdecimal() and int(choice) > MAX_THREADS:  # OpenMP aborts the process
        sys.stderr.write(f'warning: {ENV}={environ[ENV][:40]!r} is over {MAX_THREADS} (4 a '
                         f'logical CPU); using {MAX_THREADS}\n')
        count = MAX_THREADS
    else:  # at import: an error here would come before the CLI can print one
        sys.stderr.write(f'warning: {ENV}={environ[ENV][:40]!r} is not cores, mxnet or a positive '
                         'number; using one thread per core\n')
        count = physical_cores()
        if count is None:
            return None
    if 'mxnet' in modules:
        configured = set_loaded_mxnet(count)
        return configured
    environ['OMP_NUM_THREADS'] = str(count)
    configured = count
    return count


# MXNet 1.9's engine::OpenMP singleton (src/engine/openmp.h): bool enabled_, int
# omp_thread_max_, int reserve_cores_, bool omp_num_threads_set_in_environment_. Its setter is
# inline, so the cap is written at its offset; the exported getters check the layout.
_GET, _RECOMMENDED = ('_ZN5mxnet6engine6OpenMP3GetEv',
                      '_ZNK5mxnet6engine6OpenMP28GetRecommendedOMPThreadCountEb')
_CAP_OFFSET, _IN_ENV_OFFSET = 4, 12


def set_loaded_mxnet(count):
    """Raise an already imported MXNet's OpenMP thread cap to ``count``; returns ``count`` if
    its CPU worker threads start after this (they take the cap then), else ``None`` after one
    warning on stderr saying how to get ``count`` threads."""
    import ctypes

    import mxnet as mx
    try:
        get, recommended = getattr(mx.base._LIB, _GET), getattr(mx.base._LIB, _RECOMMENDED)
    except AttributeError:
        return _warn_fixed(None, count, f'MXNet {mx.__version__} has no engine::OpenMP to set')
    get.restype, recommended.restype = ctypes.c_void_p, ctypes.c_int
    recommended.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    openmp = get()
    cap = ctypes.c_int.from_address(openmp + _CAP_OFFSET)
    old = cap.value
    if (not mx.__version__.startswith('1.9.') or ctypes.c_bool.from_address(openmp + _IN_ENV_OFFSET).value
            or not 1 <= old <= 4096 or recommended(openmp, False) > old):
        return _warn_fixed(None, count, f'MXNet {mx.__version__}\'s thread cap is not where 1.9 keeps it')
    tasks = len(os.listdir('/proc/self/task'))
    cap.value = count
    mx.nd.zeros((1,), ctx=mx.cpu()).wait_to_read()  # starts the CPU workers, unless they run already
    if len(os.listdir('/proc/self/task')) > tasks:
        return count
    cap.value = old  # as the warning says: workers started later (cpu(1), ...) keep it too
    return _warn_fixed(old, count, 'MXNet ran operators before gluon_bertft was imported')


def _warn_fixed(old, count, why):
    now = f'{old} OpenMP thread(s)' if old else "MXNet's default number of OpenMP threads"
    sys.stderr.write(f'warning: {why}, so it keeps {now} per operator instead of {count} (one per '
                     'core; training can be ~1.5x slower). Import gluon_bertft before mxnet and d2l '
                     f'(in a notebook: restart the kernel), or set OMP_NUM_THREADS={count} before '
                     'Python starts.\n')
    return None
