"""Devices, seeds, and the one batch splitter that every loop (fine-tuning, evaluation,
pretraining) uses."""
import random

import mxnet as mx
import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon

from ..common.errors import ConfigError, shorten


def default_devices():
    """All GPUs, else ``[cpu()]`` (d2l 1.0.3's ``try_all_gpus`` returns ``[]`` without a GPU)."""
    return d2l.try_all_gpus() or [mx.cpu()]


def parse_devices(spec):
    """Devices from ``'auto'`` (all GPUs, else the CPU), ``'cpu'``, ``'gpu'`` or ``'cpu:0,cpu:1'``."""
    if spec in (None, '', 'auto'):
        return default_devices()
    if spec == 'gpu':
        devices = d2l.try_all_gpus()
        if not devices:
            raise ConfigError('--devices gpu: no GPU is usable by this MXNet build')
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
    if len(set(map(str, devices))) != len(devices):
        raise ConfigError(f'--devices {shorten(spec)}: a device is named twice')
    return devices


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
