"""Devices, seeds and the one batch splitter of every loop (fine-tuning, evaluation, pretraining)."""
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from gluon_bertft.common.errors import ConfigError
from gluon_bertft.training.devices import (batch_len, default_devices, parse_devices, set_seed,
                                           split_arrays, split_batch)

TWO = [mx.cpu(0), mx.cpu(1)]


def features(n, width=4):
    tokens = np.array(onp.arange(n * width).reshape(n, width), dtype='int32')
    return tokens, np.zeros((n, width), dtype='int32'), np.array(onp.full(n, width), dtype='float32')


def test_parse_devices():
    assert parse_devices('cpu:0,cpu:1') == TWO
    assert parse_devices(' cpu:0 , cpu:1 ') == TWO
    assert parse_devices('cpu') == [mx.cpu(0)]
    assert parse_devices('auto') == parse_devices(None) == default_devices() == [mx.cpu()]
    with pytest.raises(ConfigError, match='--devices gpu: no GPU'):
        parse_devices('gpu')
    with pytest.raises(ConfigError, match="--devices 'tpu:0': expected auto, cpu, gpu"):
        parse_devices('tpu:0')
    with pytest.raises(ConfigError, match="--devices 'cpu:x'"):
        parse_devices('cpu:x')


@pytest.mark.parametrize('n, sizes', [(1, [1]), (2, [1, 1]), (3, [2, 1]), (33, [17, 16])])
def test_split_batch_never_yields_an_empty_shard(n, sizes):
    X, y = split_batch(features(n), np.arange(n), TWO)
    assert [x[0].shape[0] for x in X] == [len(s) for s in y] == sizes
    assert [x[0].ctx for x in X] == [s.ctx for s in y] == TWO[:len(sizes)]
    # the shards are the batch, in order, on their devices
    onp.testing.assert_array_equal(onp.concatenate([x[0].asnumpy() for x in X]),
                                   features(n)[0].asnumpy())
    onp.testing.assert_array_equal(onp.concatenate([s.asnumpy() for s in y]), onp.arange(n))
    # labels as a tuple (QA's start and end positions) are split alike
    X, y = split_batch(features(n), (np.arange(n), np.arange(n) + 1), TWO)
    assert [tuple(len(a) for a in s) for s in y] == [(k, k) for k in sizes]
    assert all(a.ctx == x[0].ctx for x, s in zip(X, y) for a in s)


def test_split_arrays_uses_the_first_devices_for_a_small_batch():
    shards = split_arrays(features(2), [mx.cpu(0), mx.cpu(1), mx.cpu(2)])
    assert len(shards) == 2 and [s[0].ctx for s in shards] == TWO
    assert all(len(a) == 1 for s in shards for a in s)


def test_batch_len():
    assert batch_len(np.zeros((5, 3))) == 5
    assert batch_len((np.zeros(4), np.zeros(4))) == 4


def test_set_seed_seeds_every_generator():
    def draw():
        return random.random(), onp.random.rand(), float(mx.np.random.uniform())
    set_seed(7)
    first = draw()
    set_seed(7)
    assert draw() == first
    set_seed(8)
    assert draw() != first


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with GPUs 0 and 1 of the given compute capabilities (the query mocked)."""
    from gluon_bertft.training import devices

    def make(*capabilities):
        gpus = [mx.gpu(i) for i in range(len(capabilities))]
        monkeypatch.setattr(devices.d2l, 'try_all_gpus', lambda: list(gpus))
        monkeypatch.setattr(devices, 'num_gpus', lambda: len(gpus))
        monkeypatch.setattr(devices.mx.util, 'get_cuda_compute_capability',
                            lambda ctx: capabilities[ctx.device_id])
        monkeypatch.setattr(devices, '_warned', set())
        return gpus
    return make


@pytest.mark.parametrize('spec', ['gpu', 'gpu:0', 'gpu:1,gpu:0'])
def test_a_gpu_this_build_cannot_run_is_refused_by_name(two_gpus, spec):
    two_gpus(90, 80)
    with pytest.raises(ConfigError, match=r'gpu\(0\) \(compute capability 9\.0\): this MXNet build '
                       r'\(mxnet-cu112 1\.9\.1\) runs on compute capabilities 5\.0 to 8\.6 only .*'
                       r'use --devices cpu'):
        parse_devices(spec)


def test_supported_gpus_are_taken(two_gpus):
    gpus = two_gpus(86, 50)
    assert parse_devices('gpu') == gpus and parse_devices('gpu:1') == [mx.gpu(1)]
    assert parse_devices('auto') == gpus


def test_auto_leaves_out_an_unsupported_gpu_with_one_warning(two_gpus, capsys):
    two_gpus(90, 80)
    assert parse_devices('auto') == [mx.gpu(1)]
    assert default_devices() == [mx.gpu(1)]
    err = capsys.readouterr().err
    assert err.count('warning: gpu(0) (compute capability 9.0)') == 1 and 'the other GPUs' in err


def test_auto_falls_back_to_the_cpu_when_no_gpu_is_supported(two_gpus, capsys):
    two_gpus(90, 90)
    assert parse_devices('auto') == [mx.cpu()]
    assert 'using the CPU (--devices auto)' in capsys.readouterr().err


def test_an_unknown_capability_does_not_block(two_gpus, monkeypatch):
    from gluon_bertft.training import devices
    gpus = two_gpus(0, 0)

    def no_driver(ctx):
        raise OSError('libcuda.so not found')
    monkeypatch.setattr(devices.mx.util, 'get_cuda_compute_capability', no_driver)
    assert parse_devices('gpu') == gpus
