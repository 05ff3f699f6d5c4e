"""Token tagging (§16.6): a tag per word from its first piece.

Two kinds of tags (``config['reader']['tag_scheme']``, :mod:`gluon_bertft.data.conll`):
``iob`` spans (CoNLL-2003 NER or chunks) scored by conlleval's span F1, and ``plain``
per-token classes (POS tags) scored by token accuracy and per-tag F1. ``auto`` (a new run's
default) is decided by the first labelled file read, the training file, and saved decided;
a saved model without the key (written before plain tags) is ``iob`` on the last column.
"""
import collections

import numpy as onp
from mxnet import np, npx

from ..common import metrics
from ..common.errors import ConfigError, DataError
from ..data import conll
from ..data.tagging import TaggingDataset
from ..data.coverage import FIRST_ROWS
from ..data.tokenize import cjk_share, get_tokenizer
from ..models.heads import BERTTagger
from ..training.distill import kl_div
from .base import LABEL_OPTIONS, Target, Task, check_saved_labels, softmax
from .labels import ClassWeights

CUT_TAG = 'O'  # the tag of the words cut off by max_len

SAVED_TAG_SCHEMES = ('iob', 'plain')  # 'auto' is decided before a model is saved
TAG_SCHEMES = ('auto',) + SAVED_TAG_SCHEMES


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
    """Token tagging: IOB spans scored by CoNLL span F1 (the baseline tags every word ``O``),
    or plain tags scored by token accuracy (the baseline: each word's most frequent tag)."""

    name = 'tag'
    loss = staticmethod(token_loss)
    accuracy = staticmethod(token_correct)
    OPTIONS = dict(tag_column=None, tag_scheme='auto', **LABEL_OPTIONS)
    RAW_INPUTS = ('text',)
    EXPLAIN_OPTIONS = ('word',)
    HF_HEAD = ('BertForTokenClassification', None)
    READER_KEYS = Task.READER_KEYS + ('tag_column', 'tag_scheme')
    per_token = True

    @classmethod
    def configure(cls, config, options):
        """The tag column (0-based, None: the last) and scheme (``auto`` until the training
        file decides it)."""
        if options['tag_scheme'] not in TAG_SCHEMES:
            raise ConfigError(f"--tag-scheme {options['tag_scheme']}: choose from auto, iob, plain")
        config['reader'].update(tag_column=options['tag_column'], tag_scheme=options['tag_scheme'])

    @classmethod
    def check_options(cls, config):
        super().check_options(config)
        if config.tag_scheme not in TAG_SCHEMES:
            raise ConfigError(f'--tag-scheme {config.tag_scheme}: choose from auto, iob, plain')
        column = config.tag_column
        if column is not None and (isinstance(column, bool) or not isinstance(column, int)
                                   or column < 1):
            raise ConfigError(f'--tag-column {column}: give a column number >= 1 (column 0 '
                              'holds the word)')

    @classmethod
    def check_saved(cls, config, check, where):
        check_saved_labels(config, check, where)
        if 'words' in config:  # written since character-level text (absent: words)
            check('words', lambda v: v in ('words', 'characters'), 'words or characters')

    @property
    def scheme(self):
        """``'iob'``, ``'plain'``, or ``'auto'`` until the training file is read."""
        return self.config['reader'].get('tag_scheme', 'iob')

    @property
    def metric(self):
        """The metric that picks the best epoch: span ``f1`` (iob), token ``accuracy`` (plain)."""
        return 'accuracy' if self.scheme == 'plain' else 'f1'

    def read(self, path, labelled=True):
        """The sentences of ``path``; with the scheme ``auto`` a labelled file decides it
        (:func:`~gluon_bertft.data.conll.decide_scheme`), for this and every later file."""
        reader, scheme = self.config['reader'], self.scheme
        sentences = conll.read_conll(path, reader['encoding'], tagged=labelled,
                                     column=reader.get('tag_column'),
                                     scheme='plain' if scheme == 'auto' else scheme)
        if not sentences:
            raise DataError(f'{path}: no sentences')
        if scheme == 'auto' and labelled:
            reader['tag_scheme'] = conll.decide_scheme(sentences)
            if reader['tag_scheme'] == 'iob':
                sentences = conll.as_iob2(sentences)
        return sentences

    def fit(self, sentences):
        """The tag names, and what a word of the training data is (``config['words']``):
        ``characters`` when the first ``FIRST_ROWS`` sentences hold mostly CJK text one
        character a line (character-level NER), so that ``--text`` is split the same way."""
        sample = sentences[:FIRST_ROWS]
        single = all(len(w) == 1 for s in sample for w in s.words)
        self.config['words'] = ('characters' if single and cjk_share(
            self.coverage_input(sample)[0]) > 0.5 else 'words')
        if self.scheme == 'plain':
            self.config['labels'] = conll.plain_tag_names(sentences)
            if len(self.config['labels']) < 2:
                raise DataError(f'{sentences[0].path}: every word of the training data is tagged '
                                f'{self.config["labels"][0]}; there is nothing to learn')
            return
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

    def soft_loss(self, y_hat, y, teacher, temperature):
        """Per sentence, the sum over its words' first tokens (label >= 0) of ``T^2`` times the
        KL divergence of the student's tag distribution from the teacher's."""
        return (kl_div(y_hat, teacher, temperature) * (y >= 0).astype('float32')).sum(axis=1)

    def teacher_labels(self, dataset, teacher):
        """The teacher's tag on every word's first token, -1 elsewhere (as :meth:`encode`)."""
        labels = onp.full(dataset.all_token_ids.shape, -1, dtype=onp.float32)
        for i, starts in enumerate(dataset.word_starts):
            labels[i, starts] = teacher[0][i, starts].argmax(axis=-1)
        return labels

    def vocab_text(self, sentences):
        tokenize = get_tokenizer(self.config['tokenizer'])
        return [' '.join(p for w in s.words for p in tokenize(w)) for s in sentences]

    def encode(self, sentences, vocab, train=False, log=print):
        plain = self.scheme == 'plain'  # a test tag unknown to the model is scored wrong
        return TaggingDataset(sentences, self.tokenizer(vocab), self.config['labels'],
                              self.max_len, log, unknown_ok=plain)

    def head(self, bert):
        return BERTTagger(bert, len(self.config['labels']))

    def tags(self, outputs, sentences, dataset):
        """Predicted (stored) tags of every word; words cut off by ``max_len`` get ``O``."""
        names = self.config['labels']
        return [[names[k] for k in onp.argmax(out[starts], axis=-1)]
                + [CUT_TAG] * (len(s.words) - len(starts))
                for out, starts, s in zip(outputs, dataset.word_starts, sentences)]

    def shown(self, tag):
        """The display name of a stored tag (``--label-names``)."""
        return (self.config.get('label_names') or {}).get(tag, tag)

    def entity_kind(self, kind):
        """An entity type as shown: the display name of its ``B-`` tag, ``B-`` dropped."""
        name = self.shown(f'B-{kind}')
        return name[2:] if name.startswith('B-') else name

    def score(self, outputs, sentences, dataset):
        """iob: span precision, recall, F1 (conlleval); plain: token accuracy, macro-F1 and
        per-tag F1 (:func:`~gluon_bertft.metrics.tag_report`)."""
        gold, pred = [s.tags for s in sentences], self.tags(outputs, sentences, dataset)
        return metrics.tag_report(gold, pred) if self.scheme == 'plain' else metrics.entity_f1(gold, pred)

    @property
    def baseline(self):
        """``baseline(train_sentences, sentences, dataset)``: the trivial predictor of the
        scheme, its docstring naming it (what finetune prints)."""
        return self._frequent_tag_baseline if self.scheme == 'plain' else self._all_o_baseline

    def _all_o_baseline(self, train_sentences, sentences, dataset):
        """Every word tagged ``O``."""
        return metrics.entity_f1([s.tags for s in sentences], [['O'] * len(s.words) for s in sentences])

    def _frequent_tag_baseline(self, train_sentences, sentences, dataset):
        """Each word's most frequent training tag, else the most frequent training tag."""
        return metrics.tag_report([s.tags for s in sentences],
                                  frequent_tags(train_sentences, [s.words for s in sentences]))

    def explain_targets(self, sentences, dataset, outputs, label=None, word=None):
        """The tag of ``word``, or else of the first word of every predicted span (iob; word 0
        if there is none) or of every word (plain: each has a tag of its own)."""
        tags, ids = self.tags(outputs, sentences, dataset), self.tag_ids()
        out = []
        for i, s in enumerate(sentences):
            starts = dataset.word_starts[i]
            if len(starts) == 0:
                raise DataError(f'{s.path}:{s.line}: no word of the sentence fits within max_len '
                                f'{self.max_len} tokens: nothing to explain')
            if word is not None and not 0 <= word < len(starts):
                kept = '' if len(starts) == len(s.words) else f', {len(starts)} of them within max_len'
                raise ConfigError(f'--word {word}: out of range: the sentence has {len(s.words)} '
                                  f'words{kept} (0 to {len(starts) - 1})')
            if word is not None:
                chosen = [word]
            elif self.scheme == 'plain':
                chosen = list(range(len(starts)))
            else:
                chosen = sorted(first for _, first, _ in metrics.entity_spans(tags[i])
                                if first < len(starts)) or [0]
            out.append((i, [Target(int(starts[j]), ids[tags[i][j]],
                                   f'word {j} {s.words[j]!r}: {self.shown(tags[i][j])}')
                            for j in chosen]))
        return out

    def tag_ids(self):
        return {t: k for k, t in enumerate(self.config['labels'])}

    def explain_input(self, sentence):
        return dict(words=list(sentence.words))

    def word_starts(self, dataset, example):
        return dataset.word_starts[example]

    def coverage_input(self, sentences):
        """Each sentence's words joined by spaces (each word is split on its own)."""
        return [' '.join(s.words) for s in sentences], self.config['tokenizer']

    def raw_rows(self, inputs):
        """The sentence of ``--text``: its words split by spaces, or, for a model trained one
        character a line (``config['words']``), its characters."""
        text = inputs.get('text') or ''
        if not text.strip():
            raise DataError('tag: give a sentence (--text), words separated by spaces')
        chars = self.config.get('words') == 'characters'
        words = [ch for ch in text if not ch.isspace()] if chars else text.split()
        return [conll.Sentence(words, None, '<input>', 1)]

    def records(self, outputs, sentences, dataset):
        out = []
        for s, tags, o, starts in zip(sentences, self.tags(outputs, sentences, dataset), outputs,
                                      dataset.word_starts):
            confidence = softmax(onp.asarray(o[starts], dtype=onp.float64)).max(axis=-1)
            out.append(dict(words=s.words, tags=[self.shown(t) for t in tags],
                            confidence=[round(float(c), 6) for c in confidence]))
        return out

    def show(self, outputs, sentences, dataset):
        """The first sentence: iob ``TYPE: words; ...`` of its spans; plain ``word/TAG ...``."""
        words, tags = sentences[0].words, self.tags(outputs, sentences, dataset)[0]
        if self.scheme == 'plain':
            return ' '.join(f'{w}/{self.shown(t)}' for w, t in zip(words, tags))
        entities = sorted(metrics.entity_spans(tags), key=lambda e: e[1])
        return '; '.join(f'{self.entity_kind(kind)}: {" ".join(words[i:j + 1])}'
                         for kind, i, j in entities) or '(no entity)'



def frequent_tags(train_sentences, word_sequences):
    """Per word of ``word_sequences``: its most frequent tag in ``train_sentences``, else the
    most frequent tag overall (ties: the tag first seen)."""
    by_word, overall = collections.defaultdict(collections.Counter), collections.Counter()
    for s in train_sentences:
        for w, t in zip(s.words, s.tags):
            by_word[w][t] += 1
            overall[t] += 1
    default = overall.most_common(1)[0][0]
    best = {w: c.most_common(1)[0][0] for w, c in by_word.items()}
    return [[best.get(w, default) for w in words] for words in word_sequences]
