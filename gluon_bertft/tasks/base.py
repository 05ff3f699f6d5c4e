"""The task protocol: what the one loop and the one orchestrator ask of a task.

A task object holds ``config``, a dict saved in the model's ``config.json`` (``task``,
``labels``, ``max_len``, reader options, ...), so that a saved model can be evaluated and used
for prediction from its folder alone. The orchestrator (:func:`gluon_bertft.finetune.finetune`)
calls, in order:

``read(path, labelled=True) -> rows``
    The examples of a data file, as a list (rows, sentences or questions). With
    ``labelled=False`` the gold labels may be absent (``predict --data``).
``fit(rows)``
    Take what the model needs from the training rows: the label names.
``vocab_text(rows) -> list of str``
    Texts, tokens separated by spaces, to build a vocabulary for random initialization.
``encode(rows, vocab, train=False, log=print) -> dataset``
    The BERT inputs: a dataset with ``all_token_ids``, ``all_segments`` (int32
    ``(n, max_len)``), ``valid_lens`` (float32 ``(n,)``) and ``labels`` (an array of ``n`` rows,
    or a tuple of them), which :class:`~gluon_bertft.data.batching.BatchIter` batches.
``head(bert) -> Block``
    The task layer on the BERT (:mod:`gluon_bertft.models.heads`); it takes
    ``(tokens, segments, valid_lens)``.
``loss(y_hat, y)``, ``accuracy(y_hat, y)``
    Per-example losses, and ``(correct, count)`` device scalars of one device's shard: the
    loop's ``train acc`` / ``test acc``.
``score(outputs, rows, dataset) -> dict``
    The field's metrics from the host outputs of every example (:func:`~gluon_bertft.training.evaluate.predict_outputs`);
    ``metric`` names the one that picks the best epoch (higher is better).
``baseline(train_rows, rows, dataset) -> dict``
    The same metrics for the trivial predictor the docstring names.
``raw_rows(inputs) -> rows``
    Rows of raw input (``text``, ``text_b``, ``premise``, ``hypothesis``, ``question``,
    ``passage``), for ``predict``.
``records(outputs, rows, dataset) -> list of dict``
    One JSON-able prediction per row (label and probabilities, score, tags, answer).
``show(outputs, rows, dataset) -> str``
    The prediction for the first row, for the terminal.

Distillation (:mod:`gluon_bertft.training.distill`) asks three more: ``per_token`` (the
head's outputs have a position axis), ``soft_loss(y_hat, y, teacher, temperature)`` (the
per-example loss towards the teacher's outputs) and ``teacher_labels(dataset, teacher)``
(labels in the dataset's format from the teacher's outputs: unlabelled rows').

The tasks with classes (``snli``, ``classify``, ``pair-classify``, ``tag``) also give
``label_counts(rows)`` (training examples, or tagged words, per class id) and ``weigh(weights)``
(make ``loss`` weight each class: ``--class-weights``), and show their labels by
``display_labels`` (``--label-names``; :mod:`.labels`).
"""
import numpy as onp

from ..common import metrics
import collections
import os

from ..common.errors import ConfigError, DataError, PretrainedError, cut
from ..data.coverage import FIRST_ROWS, check_coverage
from ..data.tokenize import cjk_share
from ..common.files import blank
from ..data.wordpiece import WordPiece
from ..data.words import tokenizer_for
from ..training.distill import kl_div
from .labels import WeightedCrossEntropy, check_label_names


def is_wordpiece(vocab):
    """Whether ``vocab`` is a Hugging Face model's WordPiece tokenizer (else the book's words)."""
    return isinstance(vocab, WordPiece)


def visible_text(text, option):
    """``text``, or ``''`` when nothing in it is visible (only separators, control and format
    characters such as zero-width spaces); ``DataError`` naming ``option`` for a lone
    surrogate, which is not text (the tokenizer would fail on it)."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as e:
        raise DataError(f'{option}: not valid Unicode text (a lone surrogate, '
                        f'U+{ord(text[e.start]):04X}, at character {e.start})') from None
    return '' if blank(text) else text


def softmax(scores):
    """Row-wise softmax of host scores ``(n, classes)``."""
    z = onp.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# what an explanation explains: a score at a position (class, tag, or QA's start 0 / end 1)
Target = collections.namedtuple('Target', 'position cls name')

# what every task takes, with its default (make_task's keywords, FinetuneConfig's fields)
COMMON_OPTIONS = dict(max_len=128, tokenizer=None, encoding='utf-8')
TABLE_OPTIONS = dict(format=None, text_columns=None, label_column=None, header=None)
LABEL_OPTIONS = dict(class_weights=None, label_names=None)
# what an error says of an option given to a task that does not take it, where more is needed
HINTS = dict(data='applies to --task snli without --train (the SNLI folder); give the files '
                  'with --train and --test')
# how an error names the tasks that take a group of options
GROUPS = {tuple(TABLE_OPTIONS): 'the table tasks', tuple(LABEL_OPTIONS): 'the tasks with classes'}
RAW_HELP = dict(premise='the premise', hypothesis='the hypothesis',
                text='the text (tag: words split by spaces; characters for a character-level model)', text_b='the second text',
                question='the question', passage='the passage')


class Task:
    """Base of the tasks: holds ``config``; subclasses implement the protocol above.

    The rules of a task are members of its class: ``OPTIONS`` (the options only some tasks
    take that this one takes, with their defaults; :func:`~gluon_bertft.tasks.check_options`
    refuses the others), :meth:`check_options` (its own rules), ``RAW_INPUTS`` (what
    ``predict``/``explain`` take as raw input), ``EXPLAIN_OPTIONS``, ``min_len``, and
    :meth:`check_saved` (the fields of a saved ``config.json`` it reads).
    """

    name = None
    metric = 'accuracy'
    min_len = 3  # tokens per example: <cls>, <sep> and a token of the text
    OPTIONS = {}
    RAW_INPUTS = ()
    EXPLAIN_OPTIONS = ()  # of label (a class), word (a word of a sentence)
    READER_KEYS = ('fmt', 'text_columns', 'label_column', 'header', 'encoding')
    needs_train = True  # snli alone can download its data
    # the Hugging Face task model of the same layers: (architecture, problem_type); None: none
    HF_HEAD = None
    AUTO_TOKENIZER = True  # mostly CJK training text gets ``basic`` (not snli's, nor qa's)
    per_token = False  # the head's outputs have a position axis (tag, qa)

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_options(cls, options):
        """The task of ``options`` (:data:`COMMON_OPTIONS` and ``OPTIONS`` by name): its
        ``config``, what a saved model's ``config.json`` keeps."""
        config = dict(task=cls.name, max_len=options['max_len'],
                      tokenizer=options.get('tokenizer') or 'whitespace',
                      reader=dict(fmt=None, text_columns=[], label_column=None, header=None,
                                  encoding=options['encoding']))
        cls.configure(config, options)
        return cls(config)

    @classmethod
    def configure(cls, config, options):
        """Put this task's ``OPTIONS`` into ``config`` (subclasses)."""

    @classmethod
    def check_options(cls, config):
        """This task's own rules on a ``FinetuneConfig`` (``ConfigError`` naming the option)."""
        if cls.needs_train and not config.train:
            raise ConfigError(f'--task {cls.name}: give the training file (--train)')
        if config.max_len < cls.min_len:
            raise ConfigError(f'--max-len {config.max_len}: --task {cls.name} needs at least '
                              f'{cls.min_len} (<cls>, <sep> and a token of each text)')
        if 'class_weights' in cls.OPTIONS:
            check_label_options(config)

    @classmethod
    def check_saved(cls, config, check, where):
        """Check the task's own fields of a saved ``config``: ``check(key, ok, expected)``
        raises ``PretrainedError`` naming the field unless ``ok(config[key])``."""

    def soft_loss(self, y_hat, y, teacher, temperature):
        """Distillation's soft loss per example, ``(batch,)``: ``T^2`` times the KL divergence
        of the student's class distribution at temperature ``T`` from the teacher's
        (:func:`~gluon_bertft.training.distill.kl_div`; Hinton et al., 2015)."""
        return kl_div(y_hat, teacher, temperature)

    def teacher_labels(self, dataset, teacher):
        """Labels in ``dataset``'s format from the teacher's outputs (host arrays, one per
        output of the head): its decision, the best class (QA: start and end position)."""
        ids = [t.argmax(axis=-1).astype(onp.float32) for t in teacher]
        return ids[0] if len(ids) == 1 else tuple(ids)

    def explain_targets(self, rows, dataset, outputs, label=None, word=None):
        """Per row, ``(example, [Target])``: the row's encoded example and the scores to
        explain in it (``label``: a class, ``word``: a word, where ``EXPLAIN_OPTIONS`` has
        them). The default: the one output of the example (a score)."""
        return [(i, [Target(0, 0, 'score')]) for i in range(len(rows))]

    def explain_input(self, row):
        """The row's input, as an explanation's record shows it."""
        return dict(texts=list(row.texts))

    def tokenizer(self, vocab):
        """``vocab`` behind the tokenizer protocol (:mod:`gluon_bertft.data.words`): a
        WordPiece as it is, a word vocabulary with the task's word splitter."""
        return tokenizer_for(vocab, self.config['tokenizer'])

    def coverage_input(self, rows):
        """``(texts, splitter)``: the raw texts of ``rows`` and the word splitter a book
        vocabulary reads them with (what :meth:`check_coverage` measures)."""
        return [t for row in rows for t in row.texts], self.config['tokenizer']

    def check_coverage(self, rows, vocab, where, vocabulary, max_unknown=None, log=print):
        """The share of the characters of the first ``FIRST_ROWS`` rows that ``vocab`` maps to
        unknown tokens, warned about above ``WARN_UNKNOWN`` and a ``DataError`` above
        ``max_unknown`` (:func:`~gluon_bertft.data.coverage.check_coverage`)."""
        texts, splitter = self.coverage_input(rows[:FIRST_ROWS])
        return check_coverage(tokenizer_for(vocab, splitter), texts, where, vocabulary,
                              max_unknown, log)

    def choose_tokenizer(self, rows, given):
        """Without ``--tokenizer`` (``given`` None), mostly CJK training text (over half the
        characters of the first ``FIRST_ROWS`` rows) gets the ``basic`` splitter, one token
        per ideograph, saved in ``config``; returns the sentence saying so, else None."""
        if given is not None or not self.AUTO_TOKENIZER:
            return None
        share = cjk_share(self.coverage_input(rows[:FIRST_ROWS])[0])
        if share <= 0.5:
            return None
        self.config['tokenizer'] = 'basic'
        return (f'the training text is mostly CJK ({100 * share:.0f}% of its characters): '
                '--tokenizer basic is used, one token per character (saved with the model)')

    def word_starts(self, dataset, example):
        """The first token of every word of an example (tagging), else None."""
        return None

    def raw_inputs(self, inputs):
        """``inputs`` (name -> text or None) checked against :attr:`RAW_INPUTS`: a given input
        this task does not take is a ``ConfigError`` naming its option, text that is not valid
        Unicode (a lone surrogate) a ``DataError``; text with nothing visible (only spaces,
        zero-width or control characters) is treated as empty, which ``raw_rows`` refuses."""
        out = {}
        for name, value in inputs.items():
            flag = f'--{name.replace("_", "-")}'
            if value is not None and name not in self.RAW_INPUTS:
                takes = ', '.join(f'--{n.replace("_", "-")}' for n in self.RAW_INPUTS)
                raise ConfigError(f'{flag}: {self.name} does not take it (it takes {takes})')
            out[name] = value if value is None else visible_text(value, flag)
        return out

    @property
    def max_len(self):
        return self.config['max_len']

    def check_rows(self, rows, path):
        if not rows:
            raise DataError(f'{path}: no examples')
        return rows

    @property
    def display_labels(self):
        """The label names as shown, by class id: ``config['label_names']`` (stored label ->
        display name, ``--label-names``) applied to ``config['labels']``."""
        names = self.config.get('label_names') or {}
        return [names.get(label, label) for label in self.config['labels']]

    def find_label(self, name, option):
        """The class id of ``name``, a display name or a stored label (None if neither);
        ``ConfigError`` naming ``option`` when it is the display name of one class and the
        stored label of another."""
        shown, stored = self.display_labels, self.config['labels']
        ids = {shown.index(name) if name in shown else None, stored.index(name) if name in stored else None}
        ids.discard(None)
        if len(ids) > 1:
            raise ConfigError(f'{option}: {name!r} is the display name of {stored[shown.index(name)]!r} '
                              f'and the stored label of another class: ambiguous')
        return ids.pop() if ids else None


def check_label_options(config):
    """``--class-weights`` (``balanced`` or a file) and ``--label-names`` (a file or
    ``STORED=NAME`` pairs) of a ``FinetuneConfig``; their contents are checked against the
    training labels by :mod:`.labels`."""
    weights, names = config.class_weights, config.label_names
    if weights is not None and weights != 'balanced' and not os.path.isfile(weights):
        raise ConfigError(f'--class-weights {weights}: no such file; give balanced or a JSON '
                          'file of label -> weight')
    if names is not None and not os.path.isfile(names) and '=' not in names:
        raise ConfigError(f'--label-names {names}: no such file, and not STORED=NAME pairs '
                          '(e.g. 0=negative,1=positive)')


def check_saved_labels(config, check, where, size=None):
    """A saved model's ``labels`` (``size`` of them, else two or more distinct names) and its
    ``label_names`` (``--label-names``), through ``check`` (:meth:`Task.check_saved`)."""
    names = lambda v: (isinstance(v, list) and all(isinstance(x, str) for x in v)
                       and len(set(v)) == len(v) and (len(v) == size if size else len(v) >= 2))
    check('labels', names, f'a list of {size or "two or more"} distinct names')
    shown = config.get('label_names')
    if shown is not None:  # written with --label-names
        strings = lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        check('label_names', strings, 'an object of stored label -> display name (strings)')
        check_label_names(shown, config['labels'], f'{where}: "label_names"', PretrainedError)


class ClassifierMixin:
    """Scoring, baseline and records shared by the classifiers over ``<cls>``."""

    metric = 'accuracy'
    EXPLAIN_OPTIONS = ('label',)
    HF_HEAD = ('BertForSequenceClassification', 'single_label_classification')

    @classmethod
    def check_saved(cls, config, check, where):
        check_saved_labels(config, check, where)

    def explain_targets(self, rows, dataset, outputs, label=None, word=None):
        """The predicted class of every row, or the class ``label`` (a display or stored name)."""
        names = self.display_labels
        chosen = None if label is None else self.find_label(label, f'--label {label!r}')
        if label is not None and chosen is None:
            raise ConfigError(f'--label {label!r}: not a label of the model '
                              f'({cut(", ".join(map(repr, names)))})')
        out = []
        for i, scores in enumerate(outputs):
            c = chosen if label is not None else int(onp.argmax(scores))
            out.append((i, [Target(0, c, names[c])]))
        return out

    def label_counts(self, rows):
        """Training examples per class id."""
        ids = onp.asarray(self.targets(rows)).astype(onp.int64)
        return onp.bincount(ids, minlength=len(self.config['labels']))

    def weigh(self, weights):
        """Weight each example's cross-entropy by its class's ``weights[id]`` (on this task
        object only; the class's unweighted ``loss`` stays as it is)."""
        self.loss = WeightedCrossEntropy(weights)

    def score(self, outputs, rows, dataset):
        """accuracy, macro-F1 and per-class F1 (keys by display name)."""
        return metrics.classification_report(dataset.labels, onp.argmax(outputs, axis=1),
                                             self.display_labels)

    def baseline(self, train_rows, rows, dataset):
        """The majority class of the training rows, predicted for every row."""
        ids = self.targets(train_rows)
        majority = onp.bincount(onp.asarray(ids).astype(onp.int64)).argmax()
        return metrics.classification_report(dataset.labels, onp.full(len(rows), majority),
                                             self.display_labels)

    def records(self, outputs, rows, dataset):
        names = self.display_labels
        probs = softmax(onp.asarray(outputs, dtype=onp.float64))
        return [dict(label=names[int(p.argmax())],
                     probabilities={n: round(float(x), 6) for n, x in zip(names, p)})
                for p in probs]

    def show(self, outputs, rows, dataset):
        return self.records(outputs[:1], rows[:1], dataset)[0]['label']
