"""Fast fp32 inference: a separate, prediction-only copy of a trained network.

:func:`inference_net` copies a head of :mod:`gluon_bertft.models.heads` (its parameters copied,
never shared) into a network with the same call and the same outputs (within 1e-5), made
faster by two switches (``docs/speed.md``):

``fused_attention`` (``GLUON_BERTFT_FUSED_ATTENTION``)
    Q, K and V come from one interleaved projection ``W_qkv``, built from the book's
    ``W_q``/``W_k``/``W_v`` when the copy is made, and the attention runs MXNet's fused
    self-attention operators (``_contrib_interleaved_matmul_selfatt_qk`` / ``_valatt``), with
    the blocks in their (seq, batch, hidden) layout
    (:func:`~gluon_bertft.models.bert.interleaved_self_attention`, which training's opt-in
    fused attention uses too); no dropout.
``onednn`` (``GLUON_BERTFT_ONEDNN``)
    The copy's encoder is hybridized with MXNet's ``MKLDNN`` subgraph backend
    (``optimize_for``'s partitioning, done at the first call): each ``FullyConnected`` and its
    activation become one oneDNN operator, and so do the fused attention operators. CPU only.

Both are on by default; ``0`` in the environment variable (or ``False`` as the keyword)
switches one off. Such graphs are inference-only (a fused ``FullyConnected`` has no gradient
for its weight), which is why they live in a copy: the trained network keeps its own graph,
and a copy does not follow later updates of the trained weights (make a new one).
"""
import os

import mxnet as mx
import numpy as onp
from mxnet.gluon import nn

from ..common.errors import ConfigError
from ..models.bert import AddNorm, BERTEncoder, PositionWiseFFN, interleaved_self_attention

SWITCHES = {'fused_attention': 'GLUON_BERTFT_FUSED_ATTENTION', 'onednn': 'GLUON_BERTFT_ONEDNN'}
VALUES = {'1': True, '0': False}
BACKEND = 'MKLDNN'  # MXNet 1.9's name of the oneDNN subgraph backend


def switch(name, value=None, environ=os.environ):
    """The setting of switch ``name`` (a key of :data:`SWITCHES`): ``value`` if given, else its
    environment variable (``1`` on, ``0`` off; unset: on). Raises ``ConfigError`` naming the
    variable for any other value."""
    if value is not None:
        return bool(value)
    variable = SWITCHES[name]
    text = environ.get(variable, '1').strip()
    if text not in VALUES:
        raise ConfigError(f'{variable}={text[:40]!r}: use 1 (on) or 0 (off)')
    return VALUES[text]


def check_switches(environ=os.environ):
    """``{switch: setting}`` of every switch as its environment variable sets it; raises
    ``ConfigError`` naming the variable for an invalid value (checked before long runs)."""
    return {name: switch(name, None, environ) for name in SWITCHES}


class FusedSelfAttention(nn.HybridBlock):
    """Self-attention with one interleaved projection ``W_qkv`` and MXNet's fused operators.

    Input ``X`` (seq, batch, hidden), ``valid_lens`` (batch,) or None -> (seq, batch, hidden).
    ``W_qkv``'s output holds, for each head in turn, that head's q, k and v (``head_size``
    units each), the layout the operators read.
    """

    def __init__(self, num_hiddens, num_heads, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.W_qkv = nn.Dense(3 * num_hiddens, use_bias=use_bias, flatten=False,
                              in_units=num_hiddens)
        self.W_o = nn.Dense(num_hiddens, use_bias=use_bias, flatten=False, in_units=num_hiddens)

    def hybrid_forward(self, F, X, valid_lens=None):
        # (seq, batch, 3 hidden) -> (seq, batch, hidden), no dropout
        return self.W_o(interleaved_self_attention(F, self.W_qkv(X), valid_lens, self.num_heads))


class FusedEncoderBlock(nn.HybridBlock):
    """:class:`~gluon_bertft.models.bert.TransformerEncoderBlock` for inference, on
    (seq, batch, hidden) inputs, with :class:`FusedSelfAttention`; parameter names equal the
    plain block's but for ``attention.W_qkv`` (in place of ``W_q``, ``W_k``, ``W_v``)."""

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, use_bias, activation,
                 layer_norm_eps, **kwargs):
        super().__init__(**kwargs)
        self.attention = FusedSelfAttention(num_hiddens, num_heads, use_bias)
        self.addnorm1 = AddNorm(0.0, num_hiddens, layer_norm_eps)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens, activation)
        self.addnorm2 = AddNorm(0.0, num_hiddens, layer_norm_eps)

    def hybrid_forward(self, F, X, valid_lens):
        Y = self.addnorm1(X, self.attention(X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class FusedEncoder(BERTEncoder):
    """:class:`~gluon_bertft.models.bert.BERTEncoder` for inference with fused attention: the
    same inputs and output (batch, seq, hidden); its blocks run in (seq, batch, hidden)."""

    def __init__(self, *, num_blks, dropout=0.0, use_bias=True, **hparams):
        super().__init__(num_blks=0, dropout=0.0, **hparams)
        self.hparams.update(num_blks=num_blks)
        with self.name_scope():
            for _ in range(num_blks):
                self.blks.add(FusedEncoderBlock(
                    hparams['num_hiddens'], hparams['ffn_num_hiddens'], hparams['num_heads'],
                    use_bias, hparams['activation'], hparams['layer_norm_eps']))

    def hybrid_forward(self, F, tokens, segments, valid_lens, pos_embedding):
        # (batch, seq, hidden) -> (seq, batch, hidden), the fused operators' layout
        X = self.embed(F, tokens, segments, pos_embedding).transpose(1, 0, 2)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X.transpose(1, 0, 2)


def interleaved_qkv(W_q, W_k, W_v, num_heads):
    """The fused projection's weight (3 hidden, in) or bias (3 hidden,) from the book's three
    (``mxnet.np`` arrays (hidden, in) or (hidden,)): rows ordered head by head, each head's
    q, k, v rows in turn."""
    qkv = mx.np.stack([W_q, W_k, W_v])  # (3, hidden, ...)
    rest = qkv.shape[2:]
    # (3, heads, head_size, ...) -> (heads, 3, head_size, ...) -> (3 hidden, ...)
    qkv = qkv.reshape((3, num_heads, -1) + rest)
    return qkv.transpose((1, 0, 2) + tuple(range(3, qkv.ndim))).reshape((-1,) + rest)


def inference_net(net, fused_attention=None, onednn=None):
    """A prediction-only copy of the head ``net`` (a head of :mod:`gluon_bertft.models.heads`
    on the package's ``BERTEncoder``): called as ``net`` is (``(tokens, segments,
    valid_lens)``), its outputs equal ``net``'s in inference within 1e-5 (dropout off).

    ``fused_attention``, ``onednn``: the switches of the module docstring; ``None`` reads
    their environment variables (``ConfigError`` naming the variable for a value other than
    0 or 1). ``onednn`` applies on CPUs only. Returns ``net`` itself when both are off, or
    when ``net`` is not a package head on the package's encoder in float32 (d2l's blocks).
    The copy holds its own parameters on ``net``'s devices: ``net`` and its graph are left
    as they were, and later training of ``net`` does not reach the copy.
    """
    fused_attention = switch('fused_attention', fused_attention)
    onednn = switch('onednn', onednn)
    params = net.collect_params()
    if not (fused_attention or onednn) or not hasattr(net, 'on_encoder') \
            or not isinstance(net.encoder, BERTEncoder) \
            or any(onp.dtype(p.dtype) != onp.float32 for p in params.values()):
        return net
    devices = next(iter(params.values())).list_ctx()
    onednn = onednn and all(d.device_type == 'cpu' for d in devices)
    hparams = dict(net.encoder.hparams, dropout=0.0)
    with mx.name.NameManager():  # the global block counters (parameter prefixes) stay as they were
        encoder = FusedEncoder(**hparams) if fused_attention else BERTEncoder(**hparams)
        copy = net.on_encoder(encoder)
    copy_params(net, copy, devices)
    # static_shape: memory planned once per batch shape (measured faster with oneDNN: speed.md)
    copy.hybridize(static_alloc=True, static_shape=True)
    if onednn:  # partitioned when first called, as optimize_for does
        copy.encoder.hybridize(True, backend=BACKEND, static_alloc=True, static_shape=True)
    return copy


def copy_params(net, copy, devices):
    """Initialize ``copy``'s parameters on ``devices`` with copies of ``net``'s values, matched
    by structural name; a fused block's ``attention.W_qkv`` from ``net``'s ``W_q``/``W_k``/``W_v``
    (:func:`interleaved_qkv`). No gradient buffers (``grad_req='null'``); draws no random
    numbers."""
    source = net._collect_params_with_prefix()
    num_heads = net.encoder.hparams['num_heads']
    for name, param in copy._collect_params_with_prefix().items():
        if '.W_qkv.' in name:
            parts = [source[name.replace('W_qkv', w)].data(devices[0]) for w in ('W_q', 'W_k', 'W_v')]
            value = interleaved_qkv(*parts, num_heads)
        else:
            value = source[name].data(devices[0])
        param.grad_req = 'null'  # prediction only: no gradient buffers
        param.initialize(mx.init.Zero(), ctx=devices)
        param.set_data(value.copy())
