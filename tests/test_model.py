import mxnet as mx
import numpy as onp
import pytest
from conftest import TINY, tiny_bert
from d2l import mxnet as d2l
from mxnet import np

from gluon_bertft.models.bert import masked_softmax

VOCAB = 50


def inputs(batch=3, seq=9, seed=1):
    rng = onp.random.RandomState(seed)
    tokens = np.array(rng.randint(0, VOCAB, (batch, seq)), dtype='int32')
    segments = np.array(rng.randint(0, 2, (batch, seq)), dtype='int32')
    valid_lens = np.array(rng.randint(2, seq + 1, batch), dtype='float32')
    pred_positions = np.array(rng.randint(0, seq, (batch, 4)), dtype='int32')
    return tokens, segments, valid_lens, pred_positions


def max_diff(a, b):
    return float(np.abs(a - b).max())


def test_masked_softmax_equals_d2l():
    scores = np.random.normal(size=(6, 5, 7))
    valid_lens = np.array([1, 7, 3, 4, 2, 6], dtype='float32')
    assert max_diff(masked_softmax(mx.ndarray, scores, valid_lens),
                    d2l.masked_softmax(scores, valid_lens)) < 1e-6


def test_shapes():
    bert = tiny_bert(VOCAB)
    tokens, segments, valid_lens, pred_positions = inputs(batch=3, seq=9)
    encoded, mlm, nsp = bert(tokens, segments, valid_lens, pred_positions)
    assert encoded.shape == (3, 9, TINY['num_hiddens'])
    assert mlm.shape == (3, 4, VOCAB)
    assert nsp.shape == (3, 2)
    assert bert(tokens, segments)[1] is None


@pytest.fixture(scope='module')
def d2l_params(tmp_path_factory):
    """A parameter file written by d2l's own BERTModel."""
    ref = tiny_bert(VOCAB, cls=d2l.BERTModel)
    ref(*inputs())  # d2l's blocks infer their input sizes on the first call
    path = str(tmp_path_factory.mktemp('d2l') / 'd2l.params')
    ref.save_parameters(path)
    return path


def test_d2l_file_loads_with_no_missing_or_extra_and_outputs_equal(d2l_params):
    ref = tiny_bert(VOCAB, cls=d2l.BERTModel)
    ref.load_parameters(d2l_params)
    ours = tiny_bert(VOCAB, seed=5)
    ours.load_parameters(d2l_params)  # strict: raises on a missing or extra parameter
    assert set(ours._collect_params_with_prefix()) == set(ref._collect_params_with_prefix())
    for a, b in zip(ref(*inputs()), ours(*inputs())):
        assert max_diff(a, b) < 1e-5


def test_our_file_loads_into_d2l(tmp_path):
    ours = tiny_bert(VOCAB, seed=3)
    ours(*inputs())
    path = str(tmp_path / 'ours.params')
    ours.save_parameters(path)
    ref = tiny_bert(VOCAB, cls=d2l.BERTModel)
    ref.load_parameters(path)
    for a, b in zip(ref(*inputs()), ours(*inputs())):
        assert max_diff(a, b) < 1e-5


@pytest.mark.parametrize('static', [False, True])
def test_hybridized_encoder_runs_compiled_and_equals_imperative(static):
    bert = tiny_bert(VOCAB)
    expected = [bert.encoder(*inputs(seq=s)[:3]) for s in (9, 5, 9)]
    bert.encoder.hybridize(static_alloc=static, static_shape=static)
    got = [bert.encoder(*inputs(seq=s)[:3]) for s in (9, 5, 9)]
    assert bert.encoder._cached_op is not None  # a compiled graph ran, not Python code
    assert bert.encoder._cached_graph[1].list_outputs()  # the symbolic graph exists
    for a, b in zip(expected, got):
        assert max_diff(a, b) < 1e-5


def test_hybridized_model_with_mlm_equals_imperative_and_gradients_match():
    bert = tiny_bert(VOCAB)
    x = inputs()

    def grads():
        with mx.autograd.record():
            encoded, mlm, nsp = bert(*x)
            loss = encoded.sum() + mlm.sum() + nsp.sum()
        loss.backward()
        return [p.grad().copy() for p in bert.collect_params().values()], (encoded, mlm, nsp)

    g_imp, out_imp = grads()
    bert.hybridize()
    g_hyb, out_hyb = grads()
    for a, b in zip(out_imp, out_hyb):
        assert max_diff(a, b) < 1e-5
    for a, b in zip(g_imp, g_hyb):
        assert max_diff(a, b) < 1e-4


def test_padding_does_not_change_outputs():
    """Padding is masked: the same pairs trimmed or padded to 128 give the same encodings."""
    bert = tiny_bert(VOCAB, max_len=128)
    tokens, segments, valid_lens, _ = inputs(seq=9)
    pad = lambda a: np.concatenate([a, np.zeros((a.shape[0], 119), dtype=a.dtype)], axis=1)
    short = bert.encoder(tokens, segments, valid_lens)
    long = bert.encoder(pad(tokens), pad(segments), valid_lens)
    for i, n in enumerate(valid_lens.asnumpy().astype(int)):
        assert max_diff(short[i, :n], long[i, :n]) < 1e-5
