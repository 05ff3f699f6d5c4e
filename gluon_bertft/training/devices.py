"""Devices, seeds, and the one batch splitter that every loop (fine-tuning, evaluation,
pretraining) uses."""
import random
import sys

import mxnet as mx
import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon

from ..common.errors import ConfigError, shorten


# mxnet-cu112==1.9.1 carries GPU kernels for compute capabilities 5.0 to 8.6 and no PTX, so
# a newer GPU (Hopper: H100, H200, 9.0) fails at its first operator ("no kernel image")
CAPABILITIES = (50, 86)
_warned = set()


def capability(device):
    """The CUDA compute capability of a GPU context as an int (86 for 8.6), None if unknown."""
    try:
        return int(mx.util.get_cuda_compute_capability(device))
    except (OSError, ValueError, RuntimeError, mx.MXNetError):
        return None


def unsupported(devices):
    """``[(device, capability)]`` of the GPUs whose compute capability this build cannot run."""
    low, high = CAPABILITIES
    found = [(d, capability(d)) for d in devices if d.device_type == 'gpu']
    return [(d, c) for d, c in found if c is not None and not low <= c <= high]


def describe(bad):
    names = ', '.join(f'{d} (compute capability {c // 10}.{c % 10})' for d, c in bad)
    low, high = CAPABILITIES
    return (f'{names}: this MXNet build (mxnet-cu112 1.9.1) runs on compute capabilities '
            f'{low // 10}.{low % 10} to {high // 10}.{high % 10} only (no kernels for newer '
            'GPUs such as H100 or H200)')


def default_devices():
    """All GPUs this build can run on, else ``[cpu()]`` (d2l 1.0.3's ``try_all_gpus`` returns
    ``[]`` without a GPU). GPUs outside :data:`CAPABILITIES` are left out with one warning."""
    gpus = d2l.try_all_gpus()
    bad = unsupported(gpus)
    if bad:
        usable = [d for d in gpus if d not in {b for b, _ in bad}]
        message = describe(bad)
        if message not in _warned:
            _warned.add(message)
            sys.stderr.write(f'warning: {message}; using {"the other GPUs" if usable else "the CPU"}'
                             ' (--devices auto)\n')
        gpus = usable
    return gpus or [mx.cpu()]


def parse_devices(spec):
    """Devices from ``'auto'`` (all GPUs, else the CPU), ``'cpu'``, ``'gpu'`` or ``'cpu:0,cpu:1'``."""
    if spec in (None, '', 'auto'):
        return default_devices()
    if spec == 'gpu':
        devices = d2l.try_all_gpus()
        if not devices:
            raise ConfigError('--devices gpu: no GPU is usable by this MXNet build')
        check_capabilities(devices, spec)
        return devices
    devices = []
    for item in spec.split(','):
        kind, _, index = item.strip().partition(':')
        if kind not in ('cpu', 'gpu') or not (index or '0').isdigit() or len(index) > 4:
            raise ConfigError(f'--devices {shorten(spec)}: expected auto, cpu, gpu or a list like '
                              'cpu:0,cpu:1 (device numbers below 10000)')
        devices.append(mx.Context(kind, int(index or 0)))
    gpus = [d for d in devices if d.device_type == 'gpu']
    if gpus:
        count = num_gpus()
        unusable = [str(d) for d in gpus if d.device_id >= count]
        if unusable:
            raise ConfigError(f'--devices {shorten(spec)}: {", ".join(unusable)} not usable; this '
                              f'MXNet build sees {count} GPU(s)')
        check_capabilities(gpus, spec)
    if len(set(map(str, devices))) != len(devices):
        raise ConfigError(f'--devices {shorten(spec)}: a device is named twice')
    return devices


def check_capabilities(gpus, spec):
    """``ConfigError`` naming each GPU of ``gpus`` that this build cannot run, its capability,
    the supported range and ``--devices cpu``."""
    bad = unsupported(gpus)
    if bad:
        raise ConfigError(f'--devices {shorten(spec)}: {describe(bad)}; use --devices cpu')


def num_gpus():
    """GPUs this MXNet build can use (0 for the CPU build, which raises when asked)."""
    try:
        return mx.context.num_gpus()
    except mx.MXNetError:
        return 0


def set_seed(seed):
    """Seed Python's, numpy's and MXNet's generators."""
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def split_arrays(arrays, devices):
    """Per-device shards of parallel arrays (first axis = examples): a list of tuples.

    Like ``d2l.split_batch_multi_inputs`` but uneven splits are allowed and a batch smaller
    than the device list uses the first devices only, so no device gets an empty shard (an
    empty shard crashes MXNet's reshape).
    """
    n = arrays[0].shape[0]
    devices = devices[:max(1, n)]
    parts = [gluon.utils.split_and_load(a, devices, even_split=False) for a in arrays]
    return list(zip(*parts))


def split_batch(features, labels, devices):
    """``(X_shards, y_shards)`` of a batch: ``features`` a tuple of arrays, ``labels`` one
    array or a tuple of arrays (QA's start and end positions); see :func:`split_arrays`."""
    X = split_arrays(tuple(features), devices)
    if isinstance(labels, (tuple, list)):
        y = split_arrays(tuple(labels), devices)
    else:
        y = [s[0] for s in split_arrays((labels,), devices)]
    return X, y


def batch_len(labels):
    """Examples in a batch whose labels are an array or a tuple of arrays."""
    return (labels[0] if isinstance(labels, (tuple, list)) else labels).shape[0]
