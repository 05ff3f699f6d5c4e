"""Attributions of a fine-tuned BERT's scores to its input tokens, and its attention weights.

The network is run from the *embedding sum*, token + segment + position embedding (before any
embedding LayerNorm), by the same blocks as :class:`~gluon_bertft.models.bert.BERTEncoder` (hybridized
or not), so that gradients with respect to that sum can be taken:

* **integrated gradients** (Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep
  Networks"): ``(x - x') . integral over a in [0, 1] of grad F(x' + a (x - x'))``, summed over the
  hidden axis; the integral by Gauss-Legendre quadrature with ``steps`` nodes, whose error falls
  far faster with ``steps`` than the left Riemann sum's. The baseline ``x'`` is the same input
  with ``<pad>`` (``[PAD]``) in place of every text token; ``<cls>``, ``<sep>``, segments and
  positions are kept, so their attributions are 0, and so are those of padding.
* **gradient x input**: ``(x - x') . grad F(x)``, one backward pass (no completeness guarantee).

Completeness: integrated gradients sum to ``F(x) - F(x')``; :func:`attribute` returns both
sides, so callers report the gap. All interpolation points of all targets go through the network
together, in batches of at most ``max_tokens`` token positions: one explanation is a few
forward/backward passes.

Attention weights (:func:`attention_weights`) are recomputed imperatively from each block's
input with the block's own parameters and :func:`~gluon_bertft.models.bert.masked_softmax`, the
operators of ``MultiHeadAttention``; the compiled training graph is unchanged.
"""
import numpy as onp
from mxnet import autograd
from mxnet import ndarray as F
from mxnet import np, npx

from ..models.bert import masked_softmax

METHODS = {'ig': 'integrated gradients', 'gradxinput': 'gradient x input'}
MAX_TOKENS = 8192  # token positions per forward/backward batch (QA at 256 tokens: 32 rows)


def embeddings(encoder, tokens, segments):
    """The embedding sum ``(batch, seq, hidden)`` of int ``tokens``, ``segments`` ``(batch, seq)``."""
    X = encoder.token_embedding(tokens) + encoder.segment_embedding(segments)
    # (1, max_len, hidden) -> (1, seq, hidden), broadcast over the batch
    return X + encoder.pos_embedding.data(tokens.ctx)[:, :tokens.shape[1], :]


def encode_embedded(encoder, X, valid_lens, attention=False):
    """The encoder from its embedding sum ``X`` ``(batch, seq, hidden)``: ``(encoded (batch, seq,
    hidden), weights)``, ``weights`` a list of ``(batch, heads, seq, seq)``, one per block, when
    ``attention`` (else empty). Equals ``encoder(tokens, segments, valid_lens)``."""
    if encoder.embedding_norm:
        X = encoder.embedding_dropout(encoder.embedding_ln(X))
    weights = []
    for blk in encoder.blks:
        if attention:
            weights.append(block_attention(blk.attention, X, valid_lens))
        X = blk(X, valid_lens)
    return X, weights


def block_attention(mha, X, valid_lens):
    """The attention weights of ``mha`` (a ``MultiHeadAttention`` of ``X`` on itself):
    ``(batch, seq, hidden) -> (batch, heads, seq (queries), seq (keys))``, rows summing to 1
    over the first ``valid_len`` keys and 0 on the others."""
    queries = mha._split_heads(F, mha.W_q(X))  # (batch * heads, seq, d)
    keys = mha._split_heads(F, mha.W_k(X))
    scores = npx.batch_dot(queries, keys, transpose_b=True) * mha.attention.scale
    lens = None if valid_lens is None else valid_lens.repeat(mha.num_heads, axis=0)
    weights = masked_softmax(F, scores, lens)  # (batch * heads, seq, seq)
    return weights.reshape(-1, mha.num_heads, weights.shape[1], weights.shape[2])


def head_scores(net, encoded, segments, valid_lens):
    """Every score of a task layer of :mod:`~gluon_bertft.models.heads`, flattened per example:
    ``(batch, K)`` (the head's ``flat_scores``); :func:`score_index` says where a target is."""
    if not hasattr(net, 'flat_scores'):
        raise TypeError(f'{type(net).__name__}: not a task layer of gluon_bertft.models.heads; '
                        'explanations support BERTClassifier, BERTRegressor, BERTTagger and '
                        'BERTSpanQA')
    return net.flat_scores(encoded, segments, valid_lens)


def score_index(net, width, position=0, cls=0):
    """Column of :func:`head_scores` ``(batch, K)`` of a target: class ``cls`` (classifiers;
    0 for the regressor), tag ``cls`` at ``position`` (tagger), or the start (``cls`` 0) or end
    (``cls`` 1) score at ``position`` (QA), for inputs ``width`` positions wide."""
    return net.score_index(width, position, cls)


def device_of(net):
    return next(iter(net.collect_params().values())).list_ctx()[0]


def baseline_tokens(tokens, keep):
    """``tokens`` with every id not in ``keep`` (the ``cls``, ``sep`` and ``pad`` ids) set to
    ``keep[-1]`` (pad): the integrated-gradients baseline."""
    return onp.where(onp.isin(tokens, keep), tokens, keep[-1]).astype(onp.int32)


def quadrature(method, steps):
    """``(alphas, weights)`` of the method's points on the path from the baseline (0) to the
    input (1); the first two points, 0 and 1, carry weight 0 and give ``F(x')`` and ``F(x)``."""
    if method == 'ig':
        nodes, weights = onp.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        return onp.concatenate([[0., 1.], (nodes + 1) / 2]), onp.concatenate([[0., 0.], weights / 2])
    if method == 'gradxinput':
        return onp.array([0., 1.]), onp.array([0., 1.])
    raise ValueError(f'method {method!r}: choose from {", ".join(METHODS)}')


def attribute(net, inputs, baseline, targets, method='ig', steps=32, max_tokens=MAX_TOKENS):
    """Token attributions of ``targets`` of ``net`` (a task layer of :mod:`~gluon_bertft.models.heads`).

    Parameters
    ----------
    inputs : ``(tokens, segments, valid_lens)``: int (n, seq), int (n, seq) and (n,) host arrays.
    baseline : int (n, seq) baseline tokens (:func:`baseline_tokens`).
    targets : list of ``(example, column)``: the example's row and the column of
        :func:`head_scores` (:func:`score_index` with ``width`` = the longest valid length).
    method : ``'ig'`` (integrated gradients, ``steps`` Gauss-Legendre nodes) or ``'gradxinput'``.
    max_tokens : token positions per forward/backward batch (memory against passes).

    Returns
    -------
    dict of host float64 arrays: ``attributions`` (J, width) (0 past each valid length),
    ``score`` (J,) = F(x), ``baseline_score`` (J,) = F(x'); J = len(targets).
    """
    tokens, segments, valid_lens = inputs
    device, width = device_of(net), int(onp.max(valid_lens))
    encoder = net.encoder
    as_dev = lambda a, dtype: np.array(onp.asarray(a)[:, :width], ctx=device, dtype=dtype)
    tok, base, seg = as_dev(tokens, 'int32'), as_dev(baseline, 'int32'), as_dev(segments, 'int32')
    lens = np.array(onp.asarray(valid_lens), ctx=device, dtype='float32')
    x, x0 = embeddings(encoder, tok, seg), embeddings(encoder, base, seg)  # (n, width, hidden)
    diff = x - x0
    alphas, weights = quadrature(method, steps)
    # one row per (target, point): the target's example and column, the point's alpha and weight
    job = onp.repeat(onp.arange(len(targets)), len(alphas))
    example = onp.array([targets[j][0] for j in job], dtype=onp.int64)
    column = onp.array([targets[j][1] for j in job], dtype=onp.int64)
    alpha, weight = onp.tile(alphas, len(targets)), onp.tile(weights, len(targets))
    attributions = onp.zeros((len(targets), width))
    values = onp.zeros(len(job))
    rows = max(1, max_tokens // width)
    for lo in range(0, len(job), rows):
        sl = slice(lo, lo + rows)
        ex = np.array(example[sl], ctx=device, dtype='int32')
        a = np.array(alpha[sl], ctx=device, dtype='float32').reshape(-1, 1, 1)
        d = diff[ex]  # (rows, width, hidden)
        X = x0[ex] + a * d
        X.attach_grad()
        with autograd.record(train_mode=False):
            encoded, _ = encode_embedded(encoder, X, lens[ex])
            scores = head_scores(net, encoded, seg[ex], lens[ex])  # (rows, K)
            picked = npx.pick(scores, np.array(column[sl], ctx=device, dtype='int32'), axis=1)
        picked.backward()
        # (rows, width, hidden) -> (rows, width): the gradient's component along x - x'
        along = (X.grad * d).sum(axis=2).asnumpy().astype(onp.float64)
        onp.add.at(attributions, job[sl], along * weight[sl, None])
        values[sl] = picked.asnumpy()
    values = values.reshape(len(targets), len(alphas))
    return dict(attributions=attributions, score=values[:, 1], baseline_score=values[:, 0])


def attention_weights(net, tokens, segments, valid_lens):
    """Host float32 ``(num_blks, n, heads, seq, seq)``: the attention weights of every block for
    int ``tokens``, ``segments`` ``(n, seq)`` and ``valid_lens`` ``(n,)`` host arrays, ``seq``
    trimmed to the longest valid length. Row ``q`` of head ``h`` in block ``l`` is how much
    query position ``q`` takes from each key (summing to 1 over the valid keys)."""
    device, width = device_of(net), int(onp.max(valid_lens))
    as_dev = lambda a: np.array(onp.asarray(a)[:, :width], ctx=device, dtype='int32')
    tok, seg = as_dev(tokens), as_dev(segments)
    lens = np.array(onp.asarray(valid_lens), ctx=device, dtype='float32')
    _, weights = encode_embedded(net.encoder, embeddings(net.encoder, tok, seg), lens, True)
    return onp.stack([w.asnumpy() for w in weights])
