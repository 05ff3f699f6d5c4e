"""Task layers on a pretrained BERT: the document's ``BERTClassifier``, and the other task
layers of §16.6: regression, token tagging, span question answering. (No data imports: the
book's ``predict_snli`` is in :mod:`gluon_bertft.inference.predict`.)"""
from types import SimpleNamespace

from mxnet import np
from mxnet.gluon import nn


def _bert_like(encoder, hidden):
    """What a head's constructor reads of a BERT: ``encoder`` and a fresh copy of ``hidden``'s
    layout (its units, input units and activation; parameters not initialized)."""
    act = hidden.act._act_type if hidden.act is not None else None
    return SimpleNamespace(encoder=encoder, hidden=nn.Dense(
        hidden._units, activation=act, in_units=hidden._in_units, flatten=hidden._flatten))


class ClsScores:
    """Explanations' view of a head on ``<cls>`` (:mod:`gluon_bertft.inference.attribution`):
    every score of an example from the encoder's output, and where a target's score is."""

    def flat_scores(self, encoded_X, segments, valid_lens):
        """(batch, seq, hidden) -> (batch, classes): the scores of every class."""
        return self.output(self.hidden(encoded_X[:, 0, :]))

    def score_index(self, width, position=0, cls=0):
        """The column of class ``cls`` (0 for the regressor's score)."""
        return cls


class BERTClassifier(ClsScores, nn.Block):
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

    def on_encoder(self, encoder):
        """A head of the same layout on ``encoder``, its own layers not initialized (their
        parameters have this head's structural names): for inference copies."""
        return BERTClassifier(_bert_like(encoder, self.hidden), self.output._units)


class BERTRegressor(ClsScores, nn.Block):
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

    def on_encoder(self, encoder):
        """A head of the same layout on ``encoder`` (:meth:`BERTClassifier.on_encoder`)."""
        return BERTRegressor(_bert_like(encoder, self.hidden))


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

    def on_encoder(self, encoder):
        """A head of the same layout on ``encoder`` (:meth:`BERTClassifier.on_encoder`)."""
        hidden = SimpleNamespace(_units=self.output._in_units)
        return BERTTagger(SimpleNamespace(encoder=encoder, hidden=hidden), self.output._units)

    def flat_scores(self, encoded_X, segments, valid_lens):
        """(batch, seq, hidden) -> (batch, seq * tags): every tag score of every position."""
        return self.output(encoded_X).reshape(encoded_X.shape[0], -1)

    def score_index(self, width, position=0, cls=0):
        """The column of tag ``cls`` at ``position``."""
        return position * self.output._units + cls


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

    def on_encoder(self, encoder):
        """A head of the same layout on ``encoder`` (:meth:`BERTClassifier.on_encoder`)."""
        hidden = SimpleNamespace(_units=self.output.dense._in_units)
        return BERTSpanQA(SimpleNamespace(encoder=encoder, hidden=hidden))

    def flat_scores(self, encoded_X, segments, valid_lens):
        """(batch, seq, hidden) -> (batch, 2 seq): the start scores, then the end scores."""
        start, end = self.output(encoded_X, segments, valid_lens)
        return np.concatenate([start, end], axis=1)

    def score_index(self, width, position=0, cls=0):
        """The column of the start (``cls`` 0) or end (1) score at ``position``, for inputs
        ``width`` positions wide."""
        return cls * width + position
