"""Opt-in float16 mixed precision for GPUs (``--dtype float16``).

The classic recipe (Micikevicius et al., 2018), which MXNet 1.9's ``contrib.amp`` does not
apply to numpy-mode Gluon blocks: the network computes in float16; Adam keeps float32 master
weights (``multi_precision``); the loss is computed in float32 and multiplied by a constant
:data:`LOSS_SCALE` before the backward pass so that small gradients do not flush to zero in
float16, and ``trainer.step(batch_size * LOSS_SCALE)`` divides it out again.

MXNet 1.9's CPU kernels have no float16 ``FullyConnected``, so float16 is refused on CPUs
before anything is read or written.
"""
from ..common.errors import ConfigError

DTYPES = ('float32', 'float16')
LOSS_SCALE = 128.0


def check_dtype(dtype, devices):
    """Raise ``ValueError`` unless ``dtype`` can train on ``devices``."""
    if dtype not in DTYPES:
        raise ConfigError(f'--dtype {dtype!r}: expected one of {", ".join(DTYPES)}')
    cpus = [d for d in devices if d.device_type != 'gpu']
    if dtype == 'float16' and cpus:
        raise ConfigError(f'--dtype float16 needs GPUs: MXNet 1.9 has no float16 FullyConnected on '
                         f'CPUs ({", ".join(map(str, cpus))}); use float32 there')


def float32_loss(loss):
    """``loss`` computed on the float32 cast of the (float16) predictions (an array, or a
    tuple of arrays such as QA's start and end scores)."""
    def cast(y_hat):
        if isinstance(y_hat, (tuple, list)):
            return tuple(o.astype('float32') for o in y_hat)
        return y_hat.astype('float32')
    return lambda y_hat, y: loss(cast(y_hat), y)
