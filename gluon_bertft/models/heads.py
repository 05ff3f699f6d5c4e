"""Task layers on a pretrained BERT: the document's ``BERTClassifier``, and the other task
layers of §16.6: regression, token tagging, span question answering. (No data imports: the
book's ``predict_snli`` is in :mod:`gluon_bertft.inference.predict`.)"""
from mxnet.gluon import nn


class BERTClassifier(nn.Block):
    """The document's classifier: ``bert.encoder`` and ``bert.hidden`` reused, one new Dense.

    ``forward`` takes ``(tokens, segments, valid_lens)`` and classifies the ``<cls>`` token.
    """

    def __init__(self, bert, num_classes=3):
        super(BERTClassifier, self).__init__()
        self.encoder = bert.encoder
        self.hidden = bert.hidden
        self.output = nn.Dense(num_classes, in_units=bert.hidden._units)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        encoded_X = self.encoder(tokens_X, segments_X, valid_lens_x)
        # (batch, seq, hidden) -> (batch, hidden): '<cls>' is at position 0
        return self.output(self.hidden(encoded_X[:, 0, :]))


class BERTRegressor(nn.Block):
    """§16.6's text-pair regression (e.g. STS-B scores): the classifier with one output unit.

    ``forward`` takes ``(tokens, segments, valid_lens)`` and returns a score per example.
    """

    def __init__(self, bert):
        super(BERTRegressor, self).__init__()
        self.encoder = bert.encoder
        self.hidden = bert.hidden
        self.output = nn.Dense(1, in_units=bert.hidden._units)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        encoded_X = self.encoder(tokens_X, segments_X, valid_lens_x)
        # (batch, seq, hidden) -> (batch, hidden) -> (batch, 1) -> (batch,)
        return self.output(self.hidden(encoded_X[:, 0, :])).reshape(-1)


class BERTTagger(nn.Block):
    """§16.6's text tagging: one Dense over the encoding of every token.

    ``forward`` takes ``(tokens, segments, valid_lens)`` and returns tag scores per position.
    """

    def __init__(self, bert, num_tags):
        super(BERTTagger, self).__init__()
        self.encoder = bert.encoder
        self.output = nn.Dense(num_tags, flatten=False, in_units=bert.hidden._units)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        # (batch, seq, hidden) -> (batch, seq, num_tags)
        return self.output(self.encoder(tokens_X, segments_X, valid_lens_x))


class SpanScores(nn.HybridBlock):
    """Start and end scores of every passage token; other positions score -1e6.

    The passage is segment B without its final ``<sep>``, so the softmax over positions in the
    loss and the decoding only ever choose passage tokens.
    """

    def __init__(self, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.dense = nn.Dense(2, flatten=False, in_units=num_hiddens)

    def hybrid_forward(self, F, encoded_X, segments, valid_lens):
        # (batch, seq, hidden) -> (batch, seq, 2)
        scores = self.dense(encoded_X)
        positions = F.npx.arange_like(segments, axis=1).astype('float32')
        # (seq,) vs (batch, 1) -> (batch, seq): 1 on passage tokens, else 0
        before_sep = positions.reshape(1, -1) < (valid_lens.astype('float32').reshape(-1, 1) - 1)
        penalty = (before_sep * segments.astype('float32') - 1) * 1e6
        # (batch, seq, 2) -> two (batch, seq)
        return scores[:, :, 0] + penalty, scores[:, :, 1] + penalty


class BERTSpanQA(nn.Block):
    """§16.6's question answering: start and end scores over the passage tokens.

    ``forward`` takes ``(tokens, segments, valid_lens)`` (question as segment A, passage as
    segment B) and returns ``(start_scores, end_scores)``, each ``(batch, seq)``.
    """

    def __init__(self, bert):
        super(BERTSpanQA, self).__init__()
        self.encoder = bert.encoder
        self.output = SpanScores(bert.hidden._units)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        encoded_X = self.encoder(tokens_X, segments_X, valid_lens_x)
        return self.output(encoded_X, segments_X, valid_lens_x)
