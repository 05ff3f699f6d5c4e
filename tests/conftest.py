import os

import mxnet as mx
import pytest

from gluon_bertft.data.snli import read_snli
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.models.bert import BERTModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
TINY = dict(num_hiddens=32, ffn_num_hiddens=64, num_heads=2, num_blks=2, max_len=64)


def shared_file(*parts):
    """Path of a file under ../shared/data; the test is skipped where it is absent (a user's clone)."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f'{path} not present (only in CI and the developers\' machines)')
    return path


@pytest.fixture(scope='session')
def sample():
    return read_snli(SAMPLE)


@pytest.fixture(scope='session')
def vocab(sample):
    return build_vocab(sample[0] + sample[1])


def tiny_bert(vocab_size, dropout=0.0, seed=0, cls=BERTModel, init=None, **overrides):
    """A small initialized BERT (d2l's class with ``cls=d2l.BERTModel``)."""
    cfg = dict(TINY, **overrides)
    mx.random.seed(seed)
    bert = cls(vocab_size, cfg['num_hiddens'], cfg['ffn_num_hiddens'], cfg['num_heads'],
               cfg['num_blks'], dropout, cfg['max_len'])
    bert.initialize(init or mx.init.Normal(0.2))
    return bert


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: over a second (subprocesses, notebooks, real data, several runs); '
                   'the quick tier is pytest -m "not slow" (README)')
