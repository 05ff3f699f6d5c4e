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
