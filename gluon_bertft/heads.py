"""Task layers on a pretrained BERT: the document's ``BERTClassifier`` and its ``predict_snli``."""
from mxnet import np
from mxnet.gluon import nn

from .data.snli import LABELS, encode_pairs


class BERTClassifier(nn.Block):
    """The document's classifier: ``bert.encoder`` and ``bert.hidden`` reused, one new Dense.

    ``forward`` takes ``(tokens, segments, valid_lens)`` and classifies the ``<cls>`` token.
    """

    def __init__(self, bert, num_classes=3):
        super(BERTClassifier, self).__init__()
        self.encoder = bert.encoder
        self.hidden = bert.hidden
        self.output = nn.Dense(num_classes)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        encoded_X = self.encoder(tokens_X, segments_X, valid_lens_x)
        # (batch, seq, hidden) -> (batch, hidden): '<cls>' is at position 0
        return self.output(self.hidden(encoded_X[:, 0, :]))


def predict_snli(net, vocab, premise, hypothesis, max_len=128):
    """Predict 'entailment', 'contradiction' or 'neutral' for one premise/hypothesis pair.

    Like the book's ``predict_snli``; the sentences are strings (or token lists) encoded as
    in training, and the network runs on the device its parameters are on.
    """
    join = lambda s: s if isinstance(s, str) else ' '.join(s)
    tokens, segments, valid_lens = encode_pairs([join(premise)], [join(hypothesis)], vocab, max_len)
    width = int(valid_lens[0])
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    inputs = (np.array(tokens[:, :width], ctx=device, dtype='int32'),
              np.array(segments[:, :width], ctx=device, dtype='int32'),
              np.array(valid_lens, ctx=device))
    return LABELS[int(net(inputs).argmax(axis=1)[0])]
