"""Token tagging (§16.6, NER on CoNLL-2003): a tag per word from its first piece."""
import numpy as onp
from mxnet import np, npx

from ..common import metrics
from ..common.errors import DataError
from ..data import conll
from ..data.tagging import TaggingDataset
from ..data.tokenize import get_tokenizer
from ..data.wordpiece import WordPieceTaggingDataset
from ..models.heads import BERTTagger
from .base import Task, is_wordpiece, softmax
from .labels import ClassWeights


def token_loss(y_hat, y, token_weights=None):
    """Per-sentence sum of the cross-entropies of the labelled tokens (label >= 0), each
    times its ``token_weights`` entry if given (``(batch, seq)``: its tag's class weight)."""
    # (batch, seq, tags), (batch, seq) -> (batch, seq) -> (batch,)
    nll = -npx.pick(npx.log_softmax(y_hat, axis=-1), np.maximum(y, 0), axis=-1)
    mask = (y >= 0).astype('float32')
    if token_weights is not None:
        mask = mask * token_weights
    return (nll * mask).sum(axis=1)


class WeightedTokenLoss:
    """:func:`token_loss` with each labelled token's cross-entropy times its tag's weight."""

    def __init__(self, weights):
        self.weights = ClassWeights(weights)

    def __call__(self, y_hat, y):
        return token_loss(y_hat, y, self.weights.of(y))


def token_correct(y_hat, y):
    """``(correct, count)`` over the labelled tokens (the loop's 'acc' for tagging)."""
    mask = (y >= 0).astype('float32')
    hits = (y_hat.argmax(axis=-1).astype('float32') == y.astype('float32')).astype('float32')
    return (hits * mask).sum(), mask.sum()


class TagTask(Task):
    """Entity tagging scored by CoNLL entity F1; the baseline tags every word ``O``."""

    name = 'tag'
    metric = 'f1'
    loss = staticmethod(token_loss)
    accuracy = staticmethod(token_correct)

    def read(self, path, labelled=True):
        sentences = conll.read_conll(path, self.config['reader']['encoding'], tagged=labelled)
        if not sentences:
            raise DataError(f'{path}: no sentences')
        return sentences

    def fit(self, sentences):
        self.config['labels'] = conll.tag_names(sentences)
        if len(self.config['labels']) < 2:
            raise DataError(f'{sentences[0].path}: every word of the training data is tagged O; '
                            'there is no entity to learn')

    def label_counts(self, sentences):
        """Tagged words per tag id (a word cut off by ``max_len`` counts too)."""
        ids = {t: k for k, t in enumerate(self.config['labels'])}
        counts = onp.zeros(len(ids), dtype=onp.int64)
        for s in sentences:
            for t in s.tags:
                counts[ids[t]] += 1
        return counts

    def weigh(self, weights):
        """Weight each labelled token's cross-entropy by its tag's ``weights[id]``."""
        self.loss = WeightedTokenLoss(weights)

    def vocab_text(self, sentences):
        tokenize = get_tokenizer(self.config['tokenizer'])
        return [' '.join(p for w in s.words for p in tokenize(w)) for s in sentences]

    def encode(self, sentences, vocab, train=False, log=print):
        if is_wordpiece(vocab):
            return WordPieceTaggingDataset(sentences, vocab, self.config['labels'], self.max_len, log)
        return TaggingDataset(sentences, vocab, self.config['labels'], self.max_len,
                              self.config['tokenizer'], log)

    def head(self, bert):
        return BERTTagger(bert, len(self.config['labels']))

    def tags(self, outputs, sentences, dataset):
        """Predicted (stored) tags of every word; words cut off by ``max_len`` get ``O``."""
        names = self.config['labels']
        return [[names[k] for k in onp.argmax(out[starts], axis=-1)] + ['O'] * (len(s.words) - len(starts))
                for out, starts, s in zip(outputs, dataset.word_starts, sentences)]

    def shown(self, tag):
        """The display name of a stored tag (``--label-names``)."""
        return (self.config.get('label_names') or {}).get(tag, tag)

    def entity_kind(self, kind):
        """An entity type as shown: the display name of its ``B-`` tag, ``B-`` dropped."""
        name = self.shown(f'B-{kind}')
        return name[2:] if name.startswith('B-') else name

    def score(self, outputs, sentences, dataset):
        """Entity precision, recall, F1 (conlleval)."""
        return metrics.entity_f1([s.tags for s in sentences], self.tags(outputs, sentences, dataset))

    def baseline(self, train_sentences, sentences, dataset):
        """Every word tagged ``O``."""
        return metrics.entity_f1([s.tags for s in sentences], [['O'] * len(s.words) for s in sentences])

    def raw_rows(self, inputs):
        if not (inputs.get('text') or '').strip():
            raise DataError('tag: give a sentence (--text), words separated by spaces')
        return [conll.Sentence(inputs['text'].split(), None, '<input>', 1)]

    def records(self, outputs, sentences, dataset):
        out = []
        for s, tags, o, starts in zip(sentences, self.tags(outputs, sentences, dataset), outputs,
                                      dataset.word_starts):
            confidence = softmax(onp.asarray(o[starts], dtype=onp.float64)).max(axis=-1)
            out.append(dict(words=s.words, tags=[self.shown(t) for t in tags],
                            confidence=[round(float(c), 6) for c in confidence]))
        return out

    def show(self, outputs, sentences, dataset):
        words, tags = sentences[0].words, self.tags(outputs, sentences, dataset)[0]
        entities = sorted(metrics.entity_spans(tags), key=lambda e: e[1])
        return '; '.join(f'{self.entity_kind(kind)}: {" ".join(words[i:j + 1])}'
                         for kind, i, j in entities) or '(no entity)'
