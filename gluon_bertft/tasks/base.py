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

The tasks with classes (``snli``, ``classify``, ``pair-classify``, ``tag``) also give
``label_counts(rows)`` (training examples, or tagged words, per class id) and ``weigh(weights)``
(make ``loss`` weight each class: ``--class-weights``), and show their labels by
``display_labels`` (``--label-names``; :mod:`.labels`).
"""
import numpy as onp

from ..common import metrics
from ..common.errors import ConfigError, DataError
from ..data.wordpiece import WordPiece
from .labels import WeightedCrossEntropy


def is_wordpiece(vocab):
    """Whether ``vocab`` is a Hugging Face model's WordPiece tokenizer (else the book's words)."""
    return isinstance(vocab, WordPiece)


def softmax(scores):
    """Row-wise softmax of host scores ``(n, classes)``."""
    z = onp.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class Task:
    """Base of the tasks: holds ``config``; subclasses implement the protocol above."""

    name = None
    metric = 'accuracy'
    min_len = 3  # tokens per example: <cls>, <sep> and a token of the text

    def __init__(self, config):
        self.config = config

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


class ClassifierMixin:
    """Scoring, baseline and records shared by the classifiers over ``<cls>``."""

    metric = 'accuracy'

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
