"""Fast inference copies (gluon_bertft.inference.fast): the plain network's outputs for every
head, every switch and batch shape; the trained network, its graph and its gradients left
alone; explanations unchanged; the switches' environment variables."""
import json

import mxnet as mx
import numpy as onp
import pytest
from conftest import tiny_bert
from mxnet import autograd, np

from gluon_bertft.common.errors import ConfigError
from gluon_bertft.inference import attribution
from gluon_bertft.inference.fast import (SWITCHES, check_switches, inference_net,
                                         interleaved_qkv, switch)
from gluon_bertft.models.bert import BERTModel
from gluon_bertft.models.heads import BERTClassifier, BERTRegressor, BERTSpanQA, BERTTagger

VOCAB = 40
HEADS = {'classify': lambda bert: BERTClassifier(bert, 3), 'regress': BERTRegressor,
         'tag': lambda bert: BERTTagger(bert, 5), 'qa': BERTSpanQA}
MINILM_SHAPED = dict(activation='gelu', embedding_norm=True, layer_norm_eps=1e-12)
ON_OFF = [(True, False), (False, True), (True, True)]


def make_net(head, seed=0, **arch):
    """A tiny random BERT (the book's, or MiniLM-shaped with ``arch``) under ``head``."""
    bert = tiny_bert(VOCAB, seed=seed, cls=lambda *a: BERTModel(*a, **arch))
    net = HEADS[head](bert)
    net.output.initialize(mx.init.Normal(0.5))
    return net


def batches():
    """Batches of widths 10, 4 and 1, with full-length, length-1 and in-between rows; segment 1
    from position 2 on (QA's passage)."""
    rng = onp.random.RandomState(0)
    for width, lens in ((10, [10, 1, 6, 3]), (4, [4, 1, 2]), (1, [1, 1])):
        tokens = rng.randint(0, VOCAB, (len(lens), width))
        segments = (onp.arange(width)[None, :] >= 2) * onp.ones((len(lens), 1))
        yield (np.array(tokens, dtype='int32'), np.array(segments, dtype='int32'),
               np.array(onp.array(lens, dtype='float32')))


def outputs(net, inputs):
    y = net(inputs)
    return [o.asnumpy() for o in (y if isinstance(y, (tuple, list)) else [y])]


def assert_same(a, b, tol=1e-5):
    for x, y in zip(a, b, strict=True):
        onp.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def graph_ops(block):
    """The operators of a hybridized block's graph (after its first call)."""
    return {n['op'] for n in json.loads(block._cached_graph[1].tojson())['nodes']}


@pytest.mark.parametrize('arch', [{}, MINILM_SHAPED], ids=['book', 'minilm-shaped'])
@pytest.mark.parametrize('head', list(HEADS))
@pytest.mark.parametrize('fused, onednn', ON_OFF)
def test_fast_copy_equals_the_plain_net(head, arch, fused, onednn):
    net = make_net(head, **arch)
    imperative = [outputs(net, b) for b in batches()]
    net.hybridize(static_alloc=True)
    plain = [outputs(net, b) for b in batches()]
    fast = inference_net(net, fused, onednn)
    assert fast is not net
    for _ in range(2):  # the first pass builds (and partitions) the graph, the second reuses it
        for ref, hyb, inputs in zip(imperative, plain, batches()):
            out = outputs(fast, inputs)
            assert [o.shape for o in out] == [o.shape for o in hyb]
            assert_same(out, hyb)
            assert_same(out, ref)
    ops = graph_ops(fast.encoder)
    assert ('_sg_mkldnn_fully_connected' in ops) == onednn
    assert bool(ops & {'_contrib_interleaved_matmul_selfatt_qk', '_sg_mkldnn_selfatt_qk'}) == fused
    assert '_sg_mkldnn_fully_connected' not in graph_ops(net.encoder)  # the trained graph


def test_interleaved_layout_is_head_by_head_q_k_v():
    hidden, heads = 6, 2
    W = [onp.arange(hidden * 4, dtype='float32').reshape(hidden, 4) + 100 * i for i in range(3)]
    qkv = interleaved_qkv(*[np.array(w) for w in W], heads).asnumpy()
    d = hidden // heads
    expected = onp.concatenate([W[j][h * d:(h + 1) * d] for h in range(heads) for j in range(3)])
    onp.testing.assert_array_equal(qkv, expected)
    bias = interleaved_qkv(*[np.array(w[:, 0]) for w in W], heads).asnumpy()
    onp.testing.assert_array_equal(bias, expected[:, 0])


def grads_after_a_step(net, inputs):
    """W_q's gradient of the first block after one backward pass, and the parameters."""
    with autograd.record():
        loss = net(inputs).sum()
    loss.backward()
    W_q = net.encoder.blks[0].attention.W_q.weight
    return W_q.grad().asnumpy(), {k: p.data().asnumpy() for k, p in net.collect_params().items()}


def test_the_trained_net_its_parameters_and_gradients_are_left_alone():
    inputs = next(batches())
    untouched, net = make_net('classify', seed=3), make_net('classify', seed=3)
    for n in (untouched, net):
        n.hybridize(static_alloc=True)
    before = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    fast = inference_net(net, True, True)
    outputs(fast, inputs)
    after = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    assert all((before[k] == after[k]).all() for k in before)
    grad, _ = grads_after_a_step(net, inputs)
    reference, _ = grads_after_a_step(untouched, inputs)
    assert onp.abs(grad).max() > 1e-4  # W_q still learns (a oneDNN graph would give 0)
    onp.testing.assert_array_equal(grad, reference)
    assert not set(fast.collect_params().values()) & set(net.collect_params().values())


def test_making_a_copy_draws_no_random_numbers_and_holds_no_gradients():
    """Training after an in-training validation pass draws the same dropout masks."""
    net = make_net('qa')
    draws = []
    for make in (False, True):
        mx.random.seed(7)
        if make:
            fast = inference_net(net, True, True)
            outputs(fast, next(batches()))
        draws.append(mx.np.random.uniform(size=(5,)).asnumpy())
    onp.testing.assert_array_equal(*draws)
    assert all(p.grad_req == 'null' for p in fast.collect_params().values())


def test_a_copy_keeps_its_weights_and_a_new_one_follows_the_trained_net():
    net = make_net('tag', seed=1)
    net.hybridize(static_alloc=True)
    inputs = next(batches())
    old = inference_net(net, True, True)
    first = outputs(old, inputs)
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    with autograd.record():
        loss = (net(inputs) ** 2).sum()
    loss.backward()
    trainer.step(1)
    trained = outputs(net, inputs)
    assert onp.abs(trained[0] - first[0]).max() > 1e-3  # the step changed the outputs
    assert_same(outputs(old, inputs), first, tol=0)
    assert_same(outputs(inference_net(net, True, True), inputs), trained)


def test_explanations_keep_the_plain_graph_and_are_unchanged(monkeypatch):
    net = make_net('classify', seed=2)
    net.hybridize(static_alloc=True)
    tokens, segments, lens = (a.asnumpy() for a in next(batches()))
    args = ((tokens, segments, lens), attribution.baseline_tokens(tokens, [1, 2, 0]),
            [(0, 1), (2, 0)])
    before = attribution.attribute(net, *args, steps=8)
    outputs(inference_net(net, True, True), next(batches()))
    after = attribution.attribute(net, *args, steps=8)
    for key in before:
        onp.testing.assert_array_equal(before[key], after[key])
    assert onp.abs(before['attributions']).max() > 1e-4


def test_switches_and_their_variables(monkeypatch):
    assert check_switches({}) == {'fused_attention': True, 'onednn': True}
    assert switch('onednn', None, {'GLUON_BERTFT_ONEDNN': '0'}) is False
    assert switch('onednn', True, {'GLUON_BERTFT_ONEDNN': 'bad'}) is True  # the keyword wins
    for name, variable in SWITCHES.items():
        with pytest.raises(ConfigError, match=f'{variable}=.yes.: use 1'):
            check_switches({variable: 'yes'})
    net = make_net('regress')
    monkeypatch.setenv('GLUON_BERTFT_FUSED_ATTENTION', '0')
    monkeypatch.setenv('GLUON_BERTFT_ONEDNN', '0')
    assert inference_net(net) is net  # both off: the plain network itself
    monkeypatch.setenv('GLUON_BERTFT_ONEDNN', 'on')
    with pytest.raises(ConfigError, match='GLUON_BERTFT_ONEDNN'):
        inference_net(net)


def test_d2l_blocks_are_returned_as_they_are():
    from d2l import mxnet as d2l
    net = BERTClassifier(tiny_bert(VOCAB, cls=d2l.BERTModel), 3)
    net.output.initialize()
    assert inference_net(net, True, True) is net


def test_finetune_refuses_a_bad_switch_before_training(capsys, monkeypatch, tmp_path):
    from tiny_data import refused, task_files
    monkeypatch.setenv('GLUON_BERTFT_FUSED_ATTENTION', 'fast')
    files = task_files('classify', tmp_path)
    refused(capsys, 'finetune', '--task', 'classify', '--train', files['train'], '--pretrained',
            'random', '--preset', 'bert.tiny', '--epochs', '1', '--out', tmp_path / 'run',
            match=r"GLUON_BERTFT_FUSED_ATTENTION='fast': use 1 \(on\) or 0 \(off\)")
    assert not (tmp_path / 'run').exists()


def test_evaluate_and_predict_file_give_the_plain_results(monkeypatch, tmp_path):
    from tiny_data import TINY_RUN, task_files

    from gluon_bertft import FinetuneConfig, finetune
    from gluon_bertft.inference import predict
    files = task_files('tag', tmp_path)
    finetune(FinetuneConfig(task='tag', epochs=1, out=str(tmp_path / 'run'), **dict(TINY_RUN, **files)),
             log=lambda *a: None)
    model, results = str(tmp_path / 'run' / 'model'), {}
    for on in ('1', '0'):
        for variable in SWITCHES.values():
            monkeypatch.setenv(variable, on)
        out = tmp_path / f'pred{on}.jsonl'
        predict.predict_file(model, files['test'], str(out), log=lambda *a: None)
        results[on] = predict.evaluate_file(model, files['test']), out.read_text()
    assert results['1'][0] == results['0'][0]
    fast, plain = ([json.loads(line) for line in r[1].splitlines()] for r in (results['1'], results['0']))
    assert [r['tags'] for r in fast] == [r['tags'] for r in plain] and len(fast) > 5
    for a, b in zip(fast, plain):
        onp.testing.assert_allclose(a['confidence'], b['confidence'], atol=1e-5)
