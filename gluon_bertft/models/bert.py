"""BERT as Gluon HybridBlocks, with the architecture and parameter names of d2l 1.0.3.

A file written by ``d2l.BERTModel.save_parameters`` loads into :class:`BERTModel` and the
other way round. Every layer is given its input size, so no parameter waits for a first
batch (d2l's do): a BERT can be saved or checked against a file before it has run. d2l's versions are ``nn.Block``s that read shapes in Python (``X.shape``);
here the same computation uses shape-free operators (``npx.reshape`` codes, ``arange_like``,
``softmax(use_length=True)``), so after ``hybridize()`` one compiled graph serves every
batch shape.

Architecture switches (keyword arguments of every block below, names in :data:`ARCH_KEYS`)
let the same blocks hold a Hugging Face ``BertModel`` (``transformers`` ``modeling_bert``).
Their defaults (:data:`ARCH_DEFAULTS`) are the book's model, with exactly its parameters:

``activation``
    FFN and MLM-transform nonlinearity: ``'relu'`` (book), ``'gelu'`` (erf form, HF
    ``hidden_act='gelu'``) or ``'gelu_tanh'`` (tanh approximation, HF ``'gelu_new'``,
    ``'gelu_pytorch_tanh'``).
``embedding_norm``
    ``True``: LayerNorm then dropout after the token + segment + position sum, as HF
    ``BertEmbeddings``. Adds the parameters ``encoder.embedding_ln.{gamma,beta}``.
``layer_norm_eps``
    epsilon of every LayerNorm (encoder and MLM head); Gluon's 1e-5 by default, HF 1e-12.
``type_vocab_size``
    rows of the segment embedding (2 in the book and in BERT checkpoints).
``attention_dropout``
    dropout rate on the attention weights; ``None``: the model's ``dropout`` (book).

Fused attention in training (opt-in, :func:`use_fused_attention`; ``docs/speed.md``): the
encoder's blocks run in (seq, batch, hidden) and each self-attention computes Q, K and V with
one interleaved projection whose weight is built in the graph from the book's ``W_q``,
``W_k``, ``W_v`` (so parameters, files and optimizer states keep the book's names and shapes,
and gradients flow back to them), then MXNet's fused operators
``_contrib_interleaved_matmul_selfatt_qk`` / ``_valatt``, which have a backward pass. The
numbers differ from the default path by float rounding (about 1e-7), hence opt-in.
"""
import math

import mxnet as mx
from mxnet import npx
from mxnet.gluon import nn

npx.set_np()

ARCH_KEYS = ('activation', 'embedding_norm', 'layer_norm_eps', 'type_vocab_size',
             'attention_dropout')
ARCH_DEFAULTS = dict(activation='relu', embedding_norm=False, layer_norm_eps=1e-5,
                     type_vocab_size=2, attention_dropout=None)
ACTIVATIONS = ('relu', 'gelu', 'gelu_tanh')


class GELUTanh(nn.HybridBlock):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    HF's ``NewGELUActivation`` (``hidden_act='gelu_new'``); any shape in, same shape out.
    """

    def hybrid_forward(self, F, x):
        return 0.5 * x * (1 + F.np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def dense_act(units, activation, in_units=0, flatten=False):
    """A ``Dense`` followed by ``activation``, with the parameters (``weight``, ``bias``) of one.

    ``'relu'`` is Dense's own ``activation='relu'`` (the book's layer, unchanged); the GELUs,
    which ``Dense`` does not offer, go into its ``act`` slot, a child without parameters.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f'activation {activation!r}: choose from {", ".join(ACTIVATIONS)}')
    if activation == 'relu':
        return nn.Dense(units, flatten=flatten, activation='relu', in_units=in_units)
    dense = nn.Dense(units, flatten=flatten, in_units=in_units)
    with dense.name_scope():
        dense.act = nn.GELU() if activation == 'gelu' else GELUTanh()  # erf form / tanh form
    return dense


def masked_softmax(F, scores, valid_lens):
    """Softmax over the last axis of ``scores`` that gives keys at positions >= valid_len weight 0.

    ``scores``: (batch * heads, queries, keys); ``valid_lens``: (batch * heads,) or None.
    Equals d2l's ``masked_softmax`` (fill masked scores with -1e6, then softmax) in one operator.
    """
    if valid_lens is None:
        return F.npx.softmax(scores)
    # (batch * heads,) -> (batch * heads, queries): the row's valid length for every query
    lengths = F.np.zeros_like(scores[:, :, 0]).astype('int32') \
        + valid_lens.astype('int32').reshape(-1, 1)
    return F.npx.softmax(scores, length=lengths, use_length=True)


def interleaved_self_attention(F, qkv, valid_lens, num_heads, dropout=None):
    """Self-attention by MXNet's fused operators: ``qkv`` (seq, batch, 3 hidden), for each
    head in turn its q, k and v (head_size units each); ``valid_lens`` (batch,) or None;
    ``dropout`` a block applied to the attention weights, or None. -> (seq, batch, hidden),
    the heads concatenated. Scores are q . k / sqrt(head_size), masked as
    :func:`masked_softmax` masks them."""
    qkv = qkv.as_nd_ndarray()  # the contrib operators take the legacy array type
    # (batch * heads, queries, keys), rows ordered as _split_heads orders them
    scores = F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=num_heads).as_np_ndarray()
    if valid_lens is not None:
        valid_lens = valid_lens.repeat(num_heads, axis=0)  # (batch * heads,)
    weights = masked_softmax(F, scores, valid_lens)
    if dropout is not None:
        weights = dropout(weights)
    return F.contrib.interleaved_matmul_selfatt_valatt(
        qkv, weights.as_nd_ndarray(), heads=num_heads).as_np_ndarray()


def interleave_heads(F, arrays, num_heads, shape):
    """One array of ``shape`` (3 hidden, ...) from the three of ``arrays`` (each (hidden, ...)):
    rows ordered head by head, each head's rows of the first, second and third in turn."""
    stacked = F.np.stack(arrays)  # (3, hidden, ...)
    rest = shape[1:]
    split = F.np.reshape(stacked, (3, num_heads, shape[0] // (3 * num_heads)) + rest)
    # (3, heads, head_size, ...) -> (heads, 3, head_size, ...) -> (3 hidden, ...)
    return F.np.reshape(split.transpose((1, 0, 2) + tuple(range(3, 3 + len(rest)))), shape)


class DotProductAttention(nn.HybridBlock):
    """Scaled dot-product attention over heads of size ``head_size``."""

    def __init__(self, head_size, dropout, **kwargs):
        super().__init__(**kwargs)
        self.scale = 1 / math.sqrt(head_size)
        self.dropout = nn.Dropout(dropout)

    def hybrid_forward(self, F, queries, keys, values, valid_lens=None):
        # (batch * heads, queries, d) x (batch * heads, keys, d) -> (batch * heads, queries, keys)
        scores = F.npx.batch_dot(queries, keys, transpose_b=True) * self.scale
        weights = masked_softmax(F, scores, valid_lens)
        return F.npx.batch_dot(self.dropout(weights), values)


class MultiHeadAttention(nn.HybridBlock):
    """Multi-head attention with d2l's parameter names ``W_q``, ``W_k``, ``W_v``, ``W_o``.

    ``dropout`` acts on the attention weights only (HF ``attention_probs_dropout_prob``).
    """

    def __init__(self, num_hiddens, num_heads, dropout, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.attention = DotProductAttention(num_hiddens // num_heads, dropout)
        self.num_hiddens, self.use_bias = num_hiddens, use_bias
        self.fused = False  # use_fused_attention(): self-attention on (seq, batch, hidden)
        dense = lambda: nn.Dense(num_hiddens, use_bias=use_bias, flatten=False, in_units=num_hiddens)
        self.W_q, self.W_k, self.W_v, self.W_o = dense(), dense(), dense(), dense()

    def hybrid_forward(self, F, queries, keys, values, valid_lens=None):
        if self.fused:  # self-attention: queries, keys and values are the same X
            return self.W_o(self._fused(F, queries, valid_lens))
        queries = self._split_heads(F, self.W_q(queries))
        keys = self._split_heads(F, self.W_k(keys))
        values = self._split_heads(F, self.W_v(values))
        if valid_lens is not None:
            # (batch,) -> (batch * heads,): each length repeated for the example's heads
            valid_lens = valid_lens.repeat(self.num_heads, axis=0)
        output = self.attention(queries, keys, values, valid_lens)
        # (batch * heads, queries, d) -> (batch, heads, queries, d) -> (batch, queries, hidden)
        output = F.npx.reshape(output, (-6, -1, self.num_heads, -2, -2)).transpose(0, 2, 1, 3)
        return self.W_o(F.npx.reshape(output, (-2, -2, -5)))

    def _fused(self, F, X, valid_lens):
        # X (seq, batch, hidden) -> (seq, batch, 3 hidden) by one product with W_q, W_k and W_v
        # interleaved in the graph (their gradients flow back through the interleaving)
        get = (lambda p: p.var()) if isinstance(X, mx.sym.Symbol) else (lambda p: p.data(X.ctx))
        blocks, hidden = (self.W_q, self.W_k, self.W_v), self.num_hiddens
        weight = interleave_heads(F, [get(b.weight) for b in blocks], self.num_heads,
                                  (3 * hidden, hidden))
        bias = (interleave_heads(F, [get(b.bias) for b in blocks], self.num_heads, (3 * hidden,))
                if self.use_bias else None)
        qkv = F.npx.fully_connected(X, weight, bias, num_hidden=3 * hidden,
                                    no_bias=not self.use_bias, flatten=False)
        return interleaved_self_attention(F, qkv, valid_lens, self.num_heads,
                                          self.attention.dropout)

    def _split_heads(self, F, X):
        # (batch, seq, hidden) -> (batch, seq, heads, d) -> (batch * heads, seq, d)
        X = F.npx.reshape(X, (-2, -2, self.num_heads, -1)).transpose(0, 2, 1, 3)
        return F.npx.reshape(X, (-5, -2, -2))


class PositionWiseFFN(nn.HybridBlock):
    """Position-wise feed-forward network on the last axis: Dense-``activation``-Dense.

    (batch, seq, in_units) -> (batch, seq, ffn_num_outputs); ``activation`` as in
    :func:`dense_act` (d2l: ReLU; HF ``BertIntermediate``/``BertOutput``: GELU).
    """

    def __init__(self, ffn_num_hiddens, ffn_num_outputs, in_units=0, activation='relu',
                 **kwargs):
        super().__init__(**kwargs)
        self.dense1 = dense_act(ffn_num_hiddens, activation, in_units)
        self.dense2 = nn.Dense(ffn_num_outputs, flatten=False, in_units=ffn_num_hiddens)

    def hybrid_forward(self, F, X):
        return self.dense2(self.dense1(X))


class AddNorm(nn.HybridBlock):
    """Residual connection then layer normalization (post-LN): ``LN(dropout(Y) + X)``.

    ``layer_norm_eps`` is the LayerNorm's epsilon (Gluon's 1e-5 by default; HF 1e-12).
    """

    def __init__(self, dropout, num_hiddens=0, layer_norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(epsilon=layer_norm_eps, in_channels=num_hiddens)

    def hybrid_forward(self, F, X, Y):
        return self.ln(self.dropout(Y) + X)


class TransformerEncoderBlock(nn.HybridBlock):
    """One post-LN Transformer encoder block: (batch, seq, hidden) -> (batch, seq, hidden).

    HF ``BertLayer``: attention, AddNorm, FFN, AddNorm. ``attention_dropout`` (default
    ``dropout``) acts on the attention weights, ``dropout`` before each residual sum.
    """

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias=False,
                 activation='relu', layer_norm_eps=1e-5, attention_dropout=None, **kwargs):
        super().__init__(**kwargs)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.attention = MultiHeadAttention(num_hiddens, num_heads, attention_dropout, use_bias)
        self.addnorm1 = AddNorm(dropout, num_hiddens, layer_norm_eps)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens, activation)
        self.addnorm2 = AddNorm(dropout, num_hiddens, layer_norm_eps)

    def hybrid_forward(self, F, X, valid_lens):
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class BERTEncoder(nn.HybridBlock):
    """Token + segment + learned position embeddings, then ``num_blks`` encoder blocks.

    Inputs: ``tokens``, ``segments`` (batch, seq) ints, ``valid_lens`` (batch,) or None
    (keys at positions >= valid_len are ignored: right padding). Output: (batch, seq, hidden).
    With ``embedding_norm`` the embedding sum goes through LayerNorm then dropout (HF
    ``BertEmbeddings``); the book adds no such layer. Other switches: module docstring.
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
                 dropout, max_len=1000, *, activation='relu', embedding_norm=False,
                 layer_norm_eps=1e-5, type_vocab_size=2, attention_dropout=None, **kwargs):
        super().__init__(**kwargs)
        # the arguments as given (no parameters): inference copies (inference/fast.py) rebuild from them
        self.hparams = dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                            ffn_num_hiddens=ffn_num_hiddens, num_heads=num_heads,
                            num_blks=num_blks, dropout=dropout, max_len=max_len,
                            activation=activation, embedding_norm=embedding_norm,
                            layer_norm_eps=layer_norm_eps, type_vocab_size=type_vocab_size,
                            attention_dropout=attention_dropout)
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(type_vocab_size, num_hiddens)
        if embedding_norm:  # only then: the book's parameter names stay as they are
            self.embedding_ln = nn.LayerNorm(epsilon=layer_norm_eps, in_channels=num_hiddens)
            self.embedding_dropout = nn.Dropout(dropout)
        self.embedding_norm = embedding_norm
        self.fused = False  # use_fused_attention(): the blocks run in (seq, batch, hidden)
        self.blks = nn.HybridSequential()
        for _ in range(num_blks):
            self.blks.add(TransformerEncoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout, True, activation,
                layer_norm_eps, attention_dropout))
        # (1, max_len, hidden): HF's position_embeddings.weight (max_len, hidden) with a batch axis
        self.pos_embedding = self.params.get('pos_embedding', shape=(1, max_len, num_hiddens))

    def hybrid_forward(self, F, tokens, segments, valid_lens, pos_embedding):
        X = self.embed(F, tokens, segments, pos_embedding)
        if self.fused:  # (batch, seq, hidden) -> (seq, batch, hidden), the fused operators'
            X = X.transpose(1, 0, 2)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X.transpose(1, 0, 2) if self.fused else X

    def embed(self, F, tokens, segments, pos_embedding):
        """The input of the first block: (batch, seq) ints -> (batch, seq, hidden)."""
        # (batch, seq) -> (batch, seq, hidden) for every embedding below
        X = self.token_embedding(tokens) + self.segment_embedding(segments)
        positions = F.npx.arange_like(tokens, axis=1).astype('int32')
        # (1, max_len, hidden) -> (1, seq, hidden), broadcast over the batch
        X = X + F.np.take(pos_embedding, positions, axis=1)
        if self.embedding_norm:
            X = self.embedding_dropout(self.embedding_ln(X))
        return X


def use_fused_attention(encoder, on=True):
    """Switch the fused self-attention of the module docstring on (or off) in ``encoder``, a
    :class:`BERTEncoder`, for training and inference alike. Same parameters, same call and
    output shapes; outputs equal the default path's within float rounding. Call it before the
    network's first hybridized call (or the graph already built is kept). Raises ``TypeError``
    for any other encoder (d2l's)."""
    if not isinstance(encoder, BERTEncoder):
        raise TypeError(f'fused attention needs the package\'s BERTEncoder, not '
                        f'{type(encoder).__name__}')
    encoder.fused = bool(on)
    for blk in encoder.blks:
        blk.attention.fused = bool(on)
    return encoder


class MaskLM(nn.HybridBlock):
    """Masked-language-model head: predicts the tokens at ``pred_positions``.

    ``mlp`` = Dense-``activation``, LayerNorm(``layer_norm_eps``), Dense(vocab): d2l's head,
    and HF's ``cls.predictions`` (transform, then the decoder, untied here).
    Inputs: X (batch, seq, hidden), pred_positions (batch, num_preds) -> (batch, num_preds, vocab).
    """

    def __init__(self, vocab_size, num_hiddens, activation='relu', layer_norm_eps=1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        self.mlp = nn.HybridSequential()
        self.mlp.add(dense_act(num_hiddens, activation, num_hiddens))
        self.mlp.add(nn.LayerNorm(epsilon=layer_norm_eps, in_channels=num_hiddens))
        self.mlp.add(nn.Dense(vocab_size, flatten=False, in_units=num_hiddens))

    def hybrid_forward(self, F, X, pred_positions):
        pred_positions = pred_positions.astype('int32')
        # (batch,) -> (batch, num_preds): the row index of every position to predict
        batch_idx = F.np.zeros_like(pred_positions) \
            + F.npx.arange_like(pred_positions, axis=0).astype('int32').reshape(-1, 1)
        # (batch, seq, hidden) -> (batch, num_preds, hidden)
        masked_X = F.npx.gather_nd(X, F.np.stack([batch_idx, pred_positions]))
        return self.mlp(masked_X)


class NextSentencePred(nn.HybridBlock):
    """Next-sentence-prediction head: a 2-way Dense on the ``<cls>`` representation."""

    def __init__(self, in_units=0, **kwargs):
        super().__init__(**kwargs)
        self.output = nn.Dense(2, in_units=in_units)

    def hybrid_forward(self, F, X):
        return self.output(X)


class BERTModel(nn.HybridBlock):
    """BERT: encoder, the ``hidden`` Dense-tanh on ``<cls>``, and the MLM and NSP heads.

    Positional arguments are d2l's; the keyword-only switches (:data:`ARCH_KEYS`, defaults
    :data:`ARCH_DEFAULTS` = the book's model) are described in the module docstring.
    ``hidden`` is HF's pooler (``pooler.dense`` + tanh on position 0); ``arch`` holds the switches.

    Returns ``(encoded (batch, seq, hidden), mlm (batch, num_preds, vocab) or None,
    nsp (batch, 2))`` from ``tokens, segments`` (batch, seq), ``valid_lens`` (batch,)
    and ``pred_positions`` (batch, num_preds).
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
                 dropout, max_len=1000, *, activation='relu', embedding_norm=False,
                 layer_norm_eps=1e-5, type_vocab_size=2, attention_dropout=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                   num_blks, dropout, max_len, activation=activation,
                                   embedding_norm=embedding_norm, layer_norm_eps=layer_norm_eps,
                                   type_vocab_size=type_vocab_size,
                                   attention_dropout=attention_dropout)
        # the switches as given, for whoever saves the model's config (no parameters)
        self.arch = {k: self.encoder.hparams[k] for k in ARCH_KEYS}
        self.hidden = nn.Dense(num_hiddens, activation='tanh', in_units=num_hiddens)
        self.mlm = MaskLM(vocab_size, num_hiddens, activation, layer_norm_eps)
        self.nsp = NextSentencePred(num_hiddens)

    def hybrid_forward(self, F, tokens, segments, valid_lens=None, pred_positions=None):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        mlm_Y_hat = None if pred_positions is None else self.mlm(encoded_X, pred_positions)
        # (batch, seq, hidden) -> (batch, hidden): the '<cls>' token at position 0
        nsp_Y_hat = self.nsp(self.hidden(encoded_X[:, 0, :]))
        return encoded_X, mlm_Y_hat, nsp_Y_hat
