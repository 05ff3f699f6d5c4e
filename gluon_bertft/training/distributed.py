"""Data-parallel training over MXNet's parameter-server kvstore (``dist_sync``, ps-lite).

A worker is a process started with ``DMLC_ROLE=worker`` and the ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER`` and ``DMLC_NUM_WORKER`` of one scheduler (what
``python -m gluon_bertft launch`` sets). The conventions (docs/scaleout.md):

- ``batch_size`` is the global batch: each of the W workers takes ``batch_size / W`` pairs of
  its own shard per step, the servers sum the W gradients and every worker divides the sum by
  the global batch, so the learning rate means what it means on one process and one
  synchronous step equals one single-process step over the union of the W local batches.
- Shards: rank r keeps every W-th training pair from the r-th, all shards cut to the same
  length, so every worker takes the same number of steps (ps-lite waits for all of them).
- Every worker pulls the summed gradient and applies the same Adam update itself
  (``update_on_kvstore=False``): the optimizer state stays on the workers, where it can be
  checkpointed, and all workers hold the same parameters.
- Rank 0 alone evaluates and writes (checkpoints, the classifier, the history).
"""
import atexit
import hashlib
import os
import sys
import threading
import time

import mxnet as mx
import numpy as onp

from ..common.errors import ConfigError

ENV = ('DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER', 'DMLC_NUM_WORKER')
TIMEOUT_ENV = 'GLUON_BERTFT_TIMEOUT'
DEFAULT_TIMEOUT = 900.0
CHECK_KEY = 1 << 30  # a kvstore key far above the Trainer's 0..num_params-1
_joined = {}  # the one cluster a process can join: kvstore, watchdog, finished


def in_worker():
    """Whether this process was started as a ps-lite worker (``DMLC_ROLE=worker``)."""
    return os.environ.get('DMLC_ROLE') == 'worker'


def default_kvstore():
    """``'dist_sync'`` in a ps-lite worker, else ``'device'`` (one machine)."""
    return 'dist_sync' if in_worker() else 'device'


def is_distributed(kvstore):
    return isinstance(kvstore, str) and kvstore.startswith('dist')


def check_environment():
    """Raise ``ValueError`` unless this process is a worker with all the ``DMLC_*`` variables
    (ps-lite would abort the process instead)."""
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing or not in_worker():
        raise ValueError(f'a distributed kvstore needs DMLC_ROLE=worker and {", ".join(ENV)} '
                         f'(missing: {", ".join(missing) or "DMLC_ROLE"}); start the workers '
                         'with python -m gluon_bertft launch (docs/scaleout.md)')


def abort(message, code=1):
    """Print ``error: message`` and end the process at once, without ps-lite's exit barrier."""
    print(f'error: {message}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


class Watchdog:
    """End the process with ``message`` when :meth:`beat` has not been called for ``timeout`` s.

    A ps-lite worker whose scheduler never answers, or whose peer died, waits forever; this
    turns the wait into a clear exit.
    """

    def __init__(self, timeout, message):
        self.timeout, self.message, self.last = timeout, message, time.monotonic()
        threading.Thread(target=self._watch, daemon=True).start()

    def beat(self, message=None):
        self.last = time.monotonic()
        self.message = message or self.message

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.timeout / 10))
            if time.monotonic() - self.last > self.timeout:
                abort(self.message)


def _leave():
    """At exit. After an error, leave at once: a normal exit would wait in ps-lite's finalize
    barrier for the other workers, which wait in push/pull for this one. After success, free
    the kvstore now (its finalize barrier): left to interpreter teardown, it may never be freed
    and ps-lite's threads abort the process."""
    if not _joined['finished']:
        abort('this worker stopped before the end of training (see above)')
    kv = _joined.pop('kv')
    kv.__del__()
    kv.handle = None  # freed; the object's own __del__ later frees nothing


MAX_TIMEOUT = 7 * 24 * 3600  # a week: the watchdog sleeps in steps of timeout / 10


def timeout_setting(environ=os.environ):
    """Seconds of ``$GLUON_BERTFT_TIMEOUT`` (default 900): ``ConfigError`` naming the
    variable unless a number from 1 to a week (0, a negative number or text would leave
    training without its watchdog, or blame the scheduler)."""
    value = environ.get(TIMEOUT_ENV)
    if value is None or not value.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float('nan')
    if not 1 <= seconds <= MAX_TIMEOUT:
        raise ConfigError(f'${TIMEOUT_ENV}={value[:40]!r}: give seconds from 1 to {MAX_TIMEOUT} '
                          '(docs/bad-input.md)')
    return seconds


def connect(kvstore='dist_sync', timeout=None):
    """Join the cluster of the ``DMLC_*`` environment; returns ``(kvstore, watchdog)``.

    Waits at most ``timeout`` seconds (default ``$GLUON_BERTFT_TIMEOUT``, else 900) for the
    scheduler to gather every node; the watchdog then ends the process when training makes no
    progress for as long (call ``watchdog.beat()`` after each step).
    """
    if _joined:
        return _joined['kv'], _joined['watchdog']
    check_environment()
    timeout = timeout or timeout_setting()
    env = {name: os.environ[name] for name in ENV}
    watchdog = Watchdog(timeout, (
        f'no answer within {timeout:g} s from the scheduler at {env["DMLC_PS_ROOT_URI"]}:'
        f'{env["DMLC_PS_ROOT_PORT"]} gathering {env["DMLC_NUM_SERVER"]} server(s) and '
        f'{env["DMLC_NUM_WORKER"]} worker(s): is it running and reachable, and do all nodes '
        'have the same DMLC_NUM_SERVER and DMLC_NUM_WORKER?'))
    kv = mx.kv.create(kvstore)
    watchdog.beat(f'no training step finished for {timeout:g} s: a worker or server has probably '
                  f'died (see its log); rerun with --resume to continue from the last checkpoint, '
                  f'or raise ${TIMEOUT_ENV} if evaluation on rank 0 takes longer')
    _joined.update(kv=kv, watchdog=watchdog, finished=False)
    atexit.register(_leave)
    return kv, watchdog


def finish():
    """Mark this worker's part as done: it may now leave through ps-lite's exit barrier."""
    _joined['finished'] = True


def shard(columns, rank, num_workers):
    """Rank ``rank``'s share of parallel lists: every ``num_workers``-th item from ``rank``.

    All shards get ``len // num_workers`` items (the last few items may go unused), so every
    worker takes the same number of steps.
    """
    size = len(columns[0]) // num_workers
    if size == 0:
        raise ValueError(f'{len(columns[0])} training examples for {num_workers} workers: the '
                         f'shard of rank {num_workers - 1} would be empty; use fewer workers')
    return tuple(column[rank::num_workers][:size] for column in columns)


def agree(kv, **numbers):
    """Raise ``ValueError`` unless every worker passed the same ``numbers``.

    Sums them on the servers: a worker that expected another number of steps would otherwise
    wait forever at the end of an epoch.
    """
    mine = onp.array(list(numbers.values()), dtype='float32')
    kv.init(CHECK_KEY, mx.nd.zeros(mine.shape))
    kv.push(CHECK_KEY, mx.nd.array(mine))  # the pull below may write into the pushed array
    total = mx.nd.zeros(mine.shape)
    kv.pull(CHECK_KEY, out=total)
    mean = total.asnumpy() / kv.num_workers
    if not onp.array_equal(mean, mine):
        raise ValueError(f'the workers disagree: rank {kv.rank} has '
                         f'{", ".join(f"{k}={v}" for k, v in numbers.items())}, the mean over the '
                         f'workers is {", ".join(f"{k}={v:g}" for k, v in zip(numbers, mean))}; '
                         'every worker must read the same files with the same options (and see '
                         'the same checkpoint when resuming)')


def fingerprint(net):
    """SHA-1 (12 hex digits) of all parameters, in name order: equal on every worker."""
    sha1 = hashlib.sha1()
    for name, param in sorted(net._collect_params_with_prefix().items()):
        sha1.update(name.encode())
        sha1.update(param.data().asnumpy().tobytes())
    return sha1.hexdigest()[:12]


def reseed(seed, rank, step):
    """Seed MXNet's generator (dropout) from ``(seed, rank, step)``: a resumed run draws what an
    uninterrupted one draws, and the workers draw different masks."""
    mx.random.seed(int(onp.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def join(kvstore, columns, batch_size, timeout=None):
    """:func:`connect`, then take this worker's :func:`shard` of ``columns``.

    Returns ``(kvstore, watchdog, shard, local batch size)``; ``batch_size`` is the global batch.
    """
    kv, watchdog = connect(kvstore, timeout)
    local = local_batch_size(batch_size, kv.num_workers)
    return kv, watchdog, shard(columns, kv.rank, kv.num_workers), local


def local_batch_size(batch_size, num_workers):
    """Each worker's part of the global ``batch_size``."""
    if batch_size % num_workers:
        raise ValueError(f'batch_size={batch_size}: must be a multiple of the {num_workers} '
                         'workers (it is the global batch)')
    return batch_size // num_workers
