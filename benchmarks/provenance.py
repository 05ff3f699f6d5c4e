"""Where and when a benchmark ran: the header of every ``benchmarks/results/*.json``."""
import datetime
import hashlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    """``git ARGS`` in the checkout, stripped stdout."""
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def uptime():
    """The load averages, as ``uptime`` prints them."""
    return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def header(script):
    """``date``, ``command``, ``commit``, ``dirty`` (uncommitted package changes) and
    ``uptime_before`` of a run of ``benchmarks/SCRIPT`` with this process's arguments."""
    return dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                command=' '.join(['python', f'benchmarks/{script}'] + sys.argv[1:]),
                commit=git('rev-parse', '--short', 'HEAD'),
                dirty=bool(git('status', '--porcelain', 'gluon_bertft')), uptime_before=uptime())


def package_digest():
    """SHA-1 of the ``gluon_bertft`` sources this run imports (another edit changes it)."""
    import gluon_bertft
    root = os.path.dirname(gluon_bertft.__file__)
    digest = hashlib.sha1()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith('.py')):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def machine_info(thread_env=()):
    """CPU, versions and the values of the ``thread_env`` variables of this run."""
    import mxnet as mx
    import numpy as onp
    model = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                  if line.startswith('model name')), platform.processor())
    features = mx.runtime.Features()
    return dict(nproc=len(os.sched_getaffinity(0)), cpu_model=model, mxnet=mx.__version__,
                numpy=onp.__version__, d2l=importlib.metadata.version('d2l'),
                python=platform.python_version(), platform=platform.platform(),
                thread_env={k: os.environ.get(k) for k in thread_env},
                mxnet_features=[k for k in ('OPENMP', 'MKLDNN', 'BLAS_OPEN', 'BLAS_MKL')
                                if features.is_enabled(k)])


def command_line():
    """This run's command line, with its ``PYTHONPATH`` if one is set."""
    path = os.environ.get('PYTHONPATH')
    prefix = f'PYTHONPATH={shlex.quote(path)} ' if path else ''
    return prefix + shlex.join([sys.executable] + sys.argv)
