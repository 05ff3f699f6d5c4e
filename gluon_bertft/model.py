"""BERT as Gluon HybridBlocks, with the architecture and parameter names of d2l 1.0.3.

A file written by ``d2l.BERTModel.save_parameters`` loads into :class:`BERTModel` and the
other way round. Every layer is given its input size, so no parameter waits for a first
batch (d2l's do): a BERT can be saved or checked against a file before it has run. d2l's versions are ``nn.Block``s that read shapes in Python (``X.shape``);
here the same computation uses shape-free operators (``npx.reshape`` codes, ``arange_like``,
``softmax(use_length=True)``), so after ``hybridize()`` one compiled graph serves every
batch shape.
"""
import math

from mxnet import npx
from mxnet.gluon import nn

npx.set_np()


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
    """Multi-head attention with d2l's parameter names ``W_q``, ``W_k``, ``W_v``, ``W_o``."""

    def __init__(self, num_hiddens, num_heads, dropout, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.attention = DotProductAttention(num_hiddens // num_heads, dropout)
        dense = lambda: nn.Dense(num_hiddens, use_bias=use_bias, flatten=False, in_units=num_hiddens)
        self.W_q, self.W_k, self.W_v, self.W_o = dense(), dense(), dense(), dense()

    def hybrid_forward(self, F, queries, keys, values, valid_lens=None):
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

    def _split_heads(self, F, X):
        # (batch, seq, hidden) -> (batch, seq, heads, d) -> (batch * heads, seq, d)
        X = F.npx.reshape(X, (-2, -2, self.num_heads, -1)).transpose(0, 2, 1, 3)
        return F.npx.reshape(X, (-5, -2, -2))


class PositionWiseFFN(nn.HybridBlock):
    """Position-wise feed-forward network: Dense-ReLU-Dense on the last axis."""

    def __init__(self, ffn_num_hiddens, ffn_num_outputs, in_units=0, **kwargs):
        super().__init__(**kwargs)
        self.dense1 = nn.Dense(ffn_num_hiddens, flatten=False, activation='relu', in_units=in_units)
        self.dense2 = nn.Dense(ffn_num_outputs, flatten=False, in_units=ffn_num_hiddens)

    def hybrid_forward(self, F, X):
        return self.dense2(self.dense1(X))


class AddNorm(nn.HybridBlock):
    """Residual connection then layer normalization (post-LN)."""

    def __init__(self, dropout, num_hiddens=0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(in_channels=num_hiddens)

    def hybrid_forward(self, F, X, Y):
        return self.ln(self.dropout(Y) + X)


class TransformerEncoderBlock(nn.HybridBlock):
    """One post-LN Transformer encoder block."""

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = AddNorm(dropout, num_hiddens)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(dropout, num_hiddens)

    def hybrid_forward(self, F, X, valid_lens):
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class BERTEncoder(nn.HybridBlock):
    """Token + segment + learned position embeddings, then ``num_blks`` encoder blocks."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
                 dropout, max_len=1000, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(2, num_hiddens)
        self.blks = nn.HybridSequential()
        for _ in range(num_blks):
            self.blks.add(TransformerEncoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout, True))
        self.pos_embedding = self.params.get('pos_embedding', shape=(1, max_len, num_hiddens))

    def hybrid_forward(self, F, tokens, segments, valid_lens, pos_embedding):
        # (batch, seq) -> (batch, seq, hidden) for every embedding below
        X = self.token_embedding(tokens) + self.segment_embedding(segments)
        positions = F.npx.arange_like(tokens, axis=1).astype('int32')
        X = X + F.np.take(pos_embedding, positions, axis=1)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X


class MaskLM(nn.HybridBlock):
    """Masked-language-model head: predicts the tokens at ``pred_positions``."""

    def __init__(self, vocab_size, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.mlp = nn.HybridSequential()
        self.mlp.add(nn.Dense(num_hiddens, flatten=False, activation='relu', in_units=num_hiddens))
        self.mlp.add(nn.LayerNorm(in_channels=num_hiddens))
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
    """BERT: encoder, the ``hidden`` Dense-tanh on ``<cls>``, and the MLM and NSP heads."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
                 dropout, max_len=1000, **kwargs):
        super().__init__(**kwargs)
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                   num_blks, dropout, max_len)
        self.hidden = nn.Dense(num_hiddens, activation='tanh', in_units=num_hiddens)
        self.mlm = MaskLM(vocab_size, num_hiddens)
        self.nsp = NextSentencePred(num_hiddens)

    def hybrid_forward(self, F, tokens, segments, valid_lens=None, pred_positions=None):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        mlm_Y_hat = None if pred_positions is None else self.mlm(encoded_X, pred_positions)
        # (batch, seq, hidden) -> (batch, hidden): the '<cls>' token at position 0
        nsp_Y_hat = self.nsp(self.hidden(encoded_X[:, 0, :]))
        return encoded_X, mlm_Y_hat, nsp_Y_hat
