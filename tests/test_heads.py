"""The task layers of §16.6: output shapes, and hybridized outputs equal to imperative ones."""
import mxnet as mx
import numpy as onp
import pytest
from conftest import tiny_bert
from mxnet import np

from gluon_bertft.models.heads import BERTClassifier, BERTRegressor, BERTSpanQA, BERTTagger

VOCAB, BATCH, SEQ = 40, 3, 10


def qa_inputs():
    """<cls> q q <sep> p p p ... <sep> <pad>: 3 question positions, passages of 4, 5, 2 tokens."""
    rng = onp.random.RandomState(0)
    tokens = np.array(rng.randint(0, VOCAB, (BATCH, SEQ)), dtype='int32')
    valid_lens = onp.array([9, 10, 6], dtype='float32')
    segments = onp.zeros((BATCH, SEQ), dtype='int32')
    for i, n in enumerate(valid_lens.astype(int)):
        segments[i, 4:n] = 1
    return tokens, np.array(segments, dtype='int32'), np.array(valid_lens)


def outputs(net, inputs):
    y = net(inputs)
    return [o.asnumpy() for o in (y if isinstance(y, (tuple, list)) else [y])]


@pytest.mark.parametrize('make, shapes', [
    (lambda bert: BERTClassifier(bert, 2), [(BATCH, 2)]),
    (lambda bert: BERTRegressor(bert), [(BATCH,)]),
    (lambda bert: BERTTagger(bert, 9), [(BATCH, SEQ, 9)]),
    (lambda bert: BERTSpanQA(bert), [(BATCH, SEQ), (BATCH, SEQ)]),
])
def test_shapes_and_hybridized_equals_imperative(make, shapes):
    net = make(tiny_bert(VOCAB))
    net.output.initialize(mx.init.Normal(0.5))
    inputs = qa_inputs()
    imperative = outputs(net, inputs)
    assert [o.shape for o in imperative] == shapes
    net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):  # the first call builds the graph, the second runs the compiled one
        hybrid = outputs(net, inputs)
        for a, b in zip(imperative, hybrid):
            onp.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_span_scores_only_on_passage_tokens():
    net = BERTSpanQA(tiny_bert(VOCAB))
    net.output.initialize(mx.init.Normal(0.5))
    tokens, segments, valid_lens = qa_inputs()
    for scores in outputs(net, (tokens, segments, valid_lens)):
        passage = (segments.asnumpy() == 1) & (onp.arange(SEQ) < valid_lens.asnumpy()[:, None] - 1)
        assert (onp.abs(scores[passage]) < 100).all()
        assert (scores[~passage] < -1e5).all()  # <cls>, question, <sep>s, <pad>
