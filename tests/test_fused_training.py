"""Fused attention in training (models.bert.use_fused_attention, opt-in): the default path's
outputs, gradients and trained weights within float rounding, the book's parameter names and
files, dropout still acting; and oneDNN-fused graphs kept away from training."""
import mxnet as mx
import numpy as onp
import pytest
from conftest import tiny_bert
from mxnet import autograd, gluon, np

from gluon_bertft.common.errors import ConfigError
from gluon_bertft.models.bert import BERTModel, use_fused_attention
from gluon_bertft.models.heads import BERTClassifier, BERTTagger
from gluon_bertft.training.trainer import make_trainer

VOCAB = 40
MINILM_SHAPED = dict(activation='gelu', embedding_norm=True, layer_norm_eps=1e-12)
TOL = 2e-5  # float rounding: the fused operators sum in another order (measured ~1e-7)


def make_net(fused, dropout=0.0, head='classify', seed=0, **arch):
    bert = tiny_bert(VOCAB, dropout, seed=seed, cls=lambda *a: BERTModel(*a, **arch))
    net = BERTClassifier(bert, 3) if head == 'classify' else BERTTagger(bert, 5)
    net.output.initialize(mx.init.Normal(0.5))
    if fused:
        use_fused_attention(net.encoder)
    return net


def batch(width=10, lens=(10, 1, 6, 3)):
    rng = onp.random.RandomState(0)
    tokens = rng.randint(0, VOCAB, (len(lens), width))
    segments = (onp.arange(width)[None, :] >= 2) * onp.ones((len(lens), 1))
    return (np.array(tokens, dtype='int32'), np.array(segments, dtype='int32'),
            np.array(onp.array(lens, dtype='float32')))


def train(net, steps=3, hybridize=True):
    """Logits and parameters after ``steps`` Adam steps on fixed batches of two widths."""
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(net, 1e-2)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for i in range(steps):
        X = batch() if i % 2 == 0 else batch(4, (4, 2, 1, 3))
        y = np.array([0, 1, 2, 1], dtype='float32')
        with autograd.record():
            out = net(X)
            l = loss(out if out.ndim == 2 else out[:, 0], y)
        l.backward()
        trainer.step(4)
    return net(batch()).asnumpy(), {k: p.data().asnumpy()
                                    for k, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize('arch, hybridize, head', [
    ({}, True, 'classify'),
    pytest.param(MINILM_SHAPED, True, 'tag', marks=pytest.mark.slow),
    pytest.param({}, False, 'classify', marks=pytest.mark.slow),
    pytest.param(MINILM_SHAPED, False, 'classify', marks=pytest.mark.slow)],
    ids=['book-hybridized-classify', 'minilm-hybridized-tag', 'book-imperative-classify',
         'minilm-imperative-classify'])
def test_fused_training_follows_the_default_path(arch, hybridize, head):
    plain_out, plain = train(make_net(False, head=head, **arch), hybridize=hybridize)
    fused_out, fused = train(make_net(True, head=head, **arch), hybridize=hybridize)
    assert fused.keys() == plain.keys()  # the book's names: W_q, W_k, W_v, no W_qkv
    assert any('.W_q.' in k for k in fused) and not any('W_qkv' in k for k in fused)
    for k in plain:
        if k.endswith('W_k.bias'):  # its gradient is 0 in exact arithmetic (a key bias shifts a
            continue  # query's scores alike), rounding noise that Adam scales up to lr: skipped
        onp.testing.assert_allclose(fused[k], plain[k], rtol=TOL, atol=TOL, err_msg=k)
    onp.testing.assert_allclose(fused_out, plain_out, rtol=TOL, atol=TOL)


def test_fused_gradients_reach_every_projection():
    """W_q, W_k and W_v each get the default path's gradient through the in-graph interleaving."""
    grads = []
    for fused in (False, True):
        net = make_net(fused)
        net.hybridize()
        with autograd.record():
            l = net(batch()).sum()
        l.backward()
        grads.append({k: p.grad().asnumpy() for k, p in net._collect_params_with_prefix().items()})
    for k, g in grads[0].items():
        onp.testing.assert_allclose(grads[1][k], g, rtol=TOL, atol=TOL, err_msg=k)
        if '.attention.W_' in k and k.endswith('weight'):
            assert onp.abs(grads[1][k]).max() > 1e-4, k


def test_fused_graph_holds_the_fused_operators():
    import json
    net = make_net(True)
    net.hybridize()
    net(batch())
    ops = {n["op"] for n in json.loads(net.encoder._cached_graph[1].tojson())["nodes"]}
    assert {'_contrib_interleaved_matmul_selfatt_qk', '_contrib_interleaved_matmul_selfatt_valatt'} <= ops


def test_fused_dropout_acts_on_the_attention_weights():
    """With dropout, training-mode outputs differ between two calls and from inference mode;
    with dropout 0 they do not."""
    net = make_net(True, dropout=0.5, attention_dropout=0.5)
    net.hybridize()
    with autograd.record(train_mode=True):
        a, b = net(batch()).asnumpy(), net(batch()).asnumpy()
    assert not onp.allclose(a, b)
    net0 = make_net(True, dropout=0.0)
    net0.hybridize()
    with autograd.record(train_mode=True):
        a, b = net0(batch()).asnumpy(), net0(batch()).asnumpy()
    onp.testing.assert_array_equal(a, b)


def test_fused_files_load_in_the_plain_network(tmp_path):
    """Parameters saved from a fused network load into the book's layout, with equal outputs."""
    fused = make_net(True, seed=1)
    fused.save_parameters(str(tmp_path / 'p.params'))
    plain = make_net(False, seed=2)
    plain.load_parameters(str(tmp_path / 'p.params'))
    onp.testing.assert_allclose(plain(batch()).asnumpy(), fused(batch()).asnumpy(),
                                rtol=TOL, atol=TOL)


def test_fused_attention_needs_the_package_encoder():
    from d2l import mxnet as d2l
    with pytest.raises(TypeError, match='BERTEncoder'):
        use_fused_attention(d2l.BERTEncoder(VOCAB, 8, 16, 2, 1, 0.0))


def test_onednn_fused_weights_get_no_gradient():
    """Why oneDNN fusion must stay out of training (issue 21): on a network hybridized with the
    MKLDNN backend, the fused FullyConnected weights get a zero gradient. If this starts to
    fail, MXNet changed, and the refusal below can be revisited."""
    net = make_net(False)
    net.encoder.hybridize(True, backend='MKLDNN', static_alloc=True)
    with autograd.record():
        l = net(batch()).sum()
    l.backward()
    w_q = net.encoder.blks[0].attention.W_q.weight.grad().asnumpy()
    assert onp.abs(w_q).max() == 0


def test_make_trainer_refuses_a_backend_graph():
    """A training graph never gets a subgraph backend (oneDNN fusion): make_trainer refuses it."""
    net = make_net(False)
    net.encoder.hybridize(True, backend='MKLDNN', static_alloc=True)
    with pytest.raises(ConfigError, match='MKLDNN'):
        make_trainer(net, 1e-3)
    make_trainer(make_net(True), 1e-3)  # the fused attention is fine: no backend


def test_train_switch_variable():
    from gluon_bertft.config import TRAIN_FUSED_ENV, train_switch
    assert train_switch({}) is False
    assert train_switch({TRAIN_FUSED_ENV: '0'}) is False
    assert train_switch({TRAIN_FUSED_ENV: ' 1 '}) is True
    with pytest.raises(ConfigError, match=TRAIN_FUSED_ENV):
        train_switch({TRAIN_FUSED_ENV: 'yes'})


@pytest.mark.slow
def test_finetune_fused_attention_follows_the_default(tmp_path):
    """finetune --fused-attention (and its variable): the default run's curve and test metric
    within float rounding (dropout 0: with dropout the two graphs draw their masks in another
    order, so runs agree only in distribution), and a saved model in the book's layout."""
    from tiny_data import TINY_RUN, classify_tsv

    from gluon_bertft import FinetuneConfig, finetune
    from gluon_bertft.config import TRAIN_FUSED_ENV
    from gluon_bertft.inference.predict import load_model
    classify_tsv(tmp_path / 'train.tsv')
    results, nets = [], []
    for fused in (False, True):
        config = FinetuneConfig(task='classify', train=str(tmp_path / 'train.tsv'), epochs=2,
                                fused_attention=fused, out=str(tmp_path / f'run{fused}'), dropout=0.0,
                                **TINY_RUN)
        net, _, result = finetune(config, log=lambda *a: None)
        results.append(result)
        nets.append(net)
    assert nets[1].encoder.fused and not nets[0].encoder.fused
    for key in ('train_loss', 'train_acc', 'test_acc'):
        onp.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-4, atol=1e-4)
    assert results[1]['test'].keys() == results[0]['test'].keys()
    for key, value in results[0]['test'].items():
        onp.testing.assert_allclose(results[1]['test'][key], value, rtol=1e-4, atol=1e-4)
    names = sorted(nets[1]._collect_params_with_prefix())
    assert names == sorted(nets[0]._collect_params_with_prefix())
    loaded = load_model(str(tmp_path / 'runTrue' / 'model'), devices=[mx.cpu()])[0]
    assert not getattr(loaded.encoder, 'fused', False)
    with pytest.raises(ConfigError, match=TRAIN_FUSED_ENV):
        import os
        os.environ[TRAIN_FUSED_ENV] = 'on'
        try:
            finetune(FinetuneConfig(task='classify', train=str(tmp_path / 'train.tsv'), **TINY_RUN),
                     log=lambda *a: None)
        finally:
            del os.environ[TRAIN_FUSED_ENV]
