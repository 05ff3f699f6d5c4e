"""Label display names (``--label-names``) and class weights (``--class-weights``).

Both apply to the tasks with classes: ``classify``, ``pair-classify``, ``snli`` (its labels are
the book's names; renaming them is allowed, the stored names stay the book's) and ``tag``
(the tag names). A *stored* label is the name the data gives a class (``config['labels']``:
``0``/``1`` for SST-2, ``ham``/``spam``, ``B-PER``); a *display* name is what ``predict``,
``evaluate`` and ``explain`` show for it. ``config['label_names']`` (saved in the model's
``config.json``) maps stored labels to display names; a stored label without one is shown as
itself.

Class weights multiply each training example's cross-entropy (each labelled token's, for
``tag``) by the weight of its gold class; the loss stays a sum over the batch divided by the
batch size, as without weights. ``balanced`` gives class ``c`` the weight
``n / (k * count_c)`` over the ``n`` training examples (tag: the ``n`` tagged words) of the
``k`` classes they hold; a class of the model absent from the training data (an SNLI class, a
tag such as ``I-MISC`` that never occurs) weighs nothing in training and gets 1.
"""
import json
import math
import os

import numpy as onp
from mxnet import gluon, np

from ..common import storage
from ..common.errors import ConfigError, DataError, cut, shorten

CLASS_TASKS = ('snli', 'classify', 'pair-classify', 'tag')


def parse_label_names(value):
    """``{stored: display}`` from ``--label-names``: a JSON file holding an object of strings, or
    ``STORED=DISPLAY`` pairs separated by commas (``0=negative,1=positive``). Raises
    ``ConfigError`` naming the option (and ``DataError`` naming the file) for a malformed value."""
    if os.path.isfile(value):
        names = storage.read_json(value, DataError)
        if not isinstance(names, dict):
            raise DataError(f'--label-names {value}: not a JSON object (stored label -> display name)')
        for stored, shown in names.items():
            if not isinstance(shown, str) or not shown.strip():
                raise DataError(f'--label-names {value}: the name of {stored!r} is {shorten(shown)}, '
                                'not a non-empty string')
        return {k: v.strip() for k, v in names.items()}
    names = {}
    for item in value.split(','):
        stored, sep, shown = (part.strip() for part in item.partition('='))
        if not (sep and stored and shown):
            raise ConfigError(f'--label-names {shorten(value)}: {shorten(item)} is not STORED=NAME '
                              '(give e.g. 0=negative,1=positive, or a JSON file)')
        if stored in names:
            raise ConfigError(f'--label-names: {stored!r} is named twice')
        names[stored] = shown
    return names


def check_label_names(names, labels, where, error=ConfigError):
    """Raise ``error`` (prefixed with ``where``) unless ``names`` maps some of ``labels`` to
    display names that, with the unnamed labels' own, are distinct."""
    known = cut(', '.join(map(repr, labels)))
    for stored in names:
        if stored not in labels:
            raise error(f'{where}: {stored!r} is not a label of the training data ({known})')
    shown = [names.get(label, label) for label in labels]
    twice = sorted({s for s in shown if shown.count(s) > 1})
    if twice:
        raise error(f'{where}: the display name {twice[0]!r} is given to two labels '
                    f'({", ".join(repr(l) for l, s in zip(labels, shown) if s == twice[0])})')


def apply_label_names(task, value):
    """Set ``task.config['label_names']`` from ``--label-names`` (None: leave it unset), after
    :meth:`fit`; ``ConfigError`` for a label the training data does not have or a name
    given twice."""
    if value is None:
        return
    names = parse_label_names(value)
    check_label_names(names, task.config['labels'], f'--label-names {cut(value, 80)}')
    task.config['label_names'] = names


def read_weight_file(path):
    """``{label: weight}`` of a ``--class-weights`` JSON file; ``DataError`` naming the file and
    the label for a value that is not a finite number > 0 (booleans, strings, NaN, inf)."""
    weights = storage.read_json(path, DataError)
    if not isinstance(weights, dict) or not weights:
        raise DataError(f'--class-weights {path}: not a JSON object of label -> weight')
    for label, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w > 0):
            raise DataError(f'--class-weights {path}: the weight of {label!r} is {json.dumps(w)[:40]}; '
                            'give a finite number > 0')
    return {label: float(w) for label, w in weights.items()}


def balanced(counts):
    """``n / (k * count_c)`` per class (``n`` examples, ``k`` classes with a count); 1 for a
    class with none. ``counts``: examples per class id."""
    counts = onp.asarray(counts, dtype=onp.int64)
    n, k = int(counts.sum()), int((counts > 0).sum())
    return [n / (k * int(c)) if c else 1.0 for c in counts]


def from_file(task, counts, path):
    """Weights per class id from a weight file whose keys are stored or display names: every
    class of the training data named, no unknown name, no class named twice."""
    found = {}
    for label, w in read_weight_file(path).items():
        c = task.find_label(label, f'--class-weights {path}')
        if c is None:
            raise DataError(f'--class-weights {path}: {label!r} is not a label of the model '
                            f'({cut(", ".join(map(repr, task.display_labels)))})')
        if c in found:
            raise DataError(f'--class-weights {path}: {task.display_labels[c]!r} is named twice')
        found[c] = w
    missing = [task.display_labels[c] for c, n in enumerate(counts) if n and c not in found]
    if missing:
        raise DataError(f'--class-weights {path}: no weight for {cut(", ".join(map(repr, missing)))} '
                        '(every label of the training data needs one)')
    return [found.get(c, 1.0) for c in range(len(counts))]


def class_weights(task, rows, value):
    """Weights per class id for ``--class-weights`` (``balanced`` or a JSON file) over the
    training ``rows``; None without the option."""
    if value is None:
        return None
    if task.name not in CLASS_TASKS:
        raise ConfigError(f'--class-weights: applies to {", ".join(CLASS_TASKS)}, not --task {task.name}')
    counts = task.label_counts(rows)
    return balanced(counts) if value == 'balanced' else from_file(task, counts, value)


def describe(task, weights):
    """``'ham 0.58, spam 3.65'``: the weights by display name."""
    return ', '.join(f'{name} {w:.3g}' for name, w in zip(task.display_labels, weights))


class ClassWeights:
    """A table of class weights, one copy per device context (made on first use there)."""

    def __init__(self, weights):
        self.host = onp.asarray(weights, dtype=onp.float32)
        self.copies = {}

    def of(self, y):
        """The weights of the class ids ``y`` (float or int array, any shape; a negative id,
        an ignored token, gets class 0's: mask it), on ``y``'s context, float32."""
        if y.ctx not in self.copies:
            self.copies[y.ctx] = np.array(self.host, ctx=y.ctx)
        return np.take(self.copies[y.ctx], np.maximum(y, 0).astype('int32'))


class WeightedCrossEntropy:
    """Per-example softmax cross-entropy times the gold class's weight: ``(batch, classes)``
    scores and ``(batch,)`` class ids -> ``(batch,)`` losses (gluon's loss, ``sample_weight``)."""

    def __init__(self, weights):
        self.weights = ClassWeights(weights)
        self.base = gluon.loss.SoftmaxCrossEntropyLoss()

    def __call__(self, y_hat, y):
        return self.base(y_hat, y, self.weights.of(y).reshape(-1, 1))
