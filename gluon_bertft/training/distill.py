"""Knowledge distillation on the one loop: the soft loss, the mixed loss, the step's forward
and the teacher's cached outputs. Task-agnostic: each task says what its soft loss is over
(:meth:`~gluon_bertft.tasks.base.Task.soft_loss`: classes, tokens, start/end positions, a
score), this module mixes it with the hard loss.

The loss of Hinton et al. (2015), as DistilBERT (Sanh et al., 2019) uses it:
``alpha * T^2 * KL(p_teacher(T) || p_student(T)) + (1 - alpha) * hard loss``, where ``p(T)`` is
the softmax of the scores divided by the temperature ``T``; the ``T^2`` keeps the soft
gradients' scale independent of ``T``. Rows without a label (``--unlabelled``) have only the
soft loss (their hard loss is multiplied by 0).

The training batches' labels are one flat tuple ``(*hard, labelled, *teacher)``: the task's
label array(s) (QA: start and end), a float32 ``(n,)`` of 1 (labelled) and 0, and the
teacher's output array(s) (one per output of the head), so that
:func:`~gluon_bertft.training.devices.split_batch` and
:class:`~gluon_bertft.data.batching.BatchIter` carry them as they carry any labels.
"""
import hashlib
import os
import zipfile

import numpy as onp
from mxnet import np, npx

from ..common import storage
from ..common.errors import DataError
from ..data.batching import PerExample
from .devices import batch_len, split_batch
from .step import StepOutput

PAD_SCORE = -1e6  # the teacher's score at positions past its batch (QA's masked positions')
CACHE_VERSION = 1


def kl_div(student, teacher, temperature, axis=-1):
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over ``axis``: scores
    ``(..., classes)`` -> ``(...)`` (one value per example, or per token). Masked scores
    (-1e6, QA) weigh 0: their teacher probability underflows to 0."""
    log_p_s = npx.log_softmax(student / temperature, axis=axis)
    log_p_t = npx.log_softmax(teacher / temperature, axis=axis)
    return (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(axis=axis) * (temperature ** 2)


class DistillLoss:
    """Per-example ``alpha * soft + (1 - alpha) * labelled * hard``.

    ``hard_loss(y_hat, y)``: the task's loss (per example); ``soft_loss(y_hat, y, teacher, T)``:
    the task's soft loss (per example, :meth:`~gluon_bertft.tasks.base.Task.soft_loss`);
    ``alpha`` in [0, 1]; ``temperature`` > 0.
    """

    def __init__(self, hard_loss, soft_loss, alpha, temperature):
        self.hard_loss, self.soft_loss = hard_loss, soft_loss
        self.alpha, self.temperature = alpha, temperature

    def __call__(self, y_hat, hard, labelled, teacher):
        loss = 0
        if self.alpha > 0:
            loss = self.alpha * self.soft_loss(y_hat, hard, teacher, self.temperature)
        if self.alpha < 1:
            loss = loss + (1 - self.alpha) * labelled * self.hard_loss(y_hat, hard)
        return loss


def unpack(labels, num_hard):
    """``(hard, labelled, teacher)`` of a flat label tuple (module docstring); ``hard`` and
    ``teacher`` are one array or a tuple, as the task's labels and the head's outputs are."""
    hard, labelled, teacher = labels[:num_hard], labels[num_hard], labels[num_hard + 1:]
    one = lambda t: t[0] if len(t) == 1 else tuple(t)
    return one(hard), labelled, one(teacher)


def distill_forward(net, loss, devices, num_hard):
    """The forward of distillation (the step's, :class:`~gluon_bertft.training.step.TrainStep`):
    ``features, (*hard, labelled, *teacher) -> StepOutput`` with the per-example losses of
    :class:`DistillLoss` ``loss`` on each device's shard, the batch size as normalizer, and the
    hard labels for the loop's "acc" (an unlabelled row's are the teacher's decisions)."""
    def forward(batch):
        features, labels = batch
        X_shards, y_shards = split_batch(features, labels, devices)
        preds, losses, hards = [], [], []
        for X, y in zip(X_shards, y_shards):
            hard, labelled, teacher = unpack(y, num_hard)
            preds.append(net(X))
            losses.append(loss(preds[-1], hard, labelled, teacher))
            hards.append(hard)
        return StepOutput(losses, batch_len(labels), preds, hards, features[0])
    return forward


def stack_outputs(outputs, max_len, per_token):
    """Host outputs of every example (:func:`~gluon_bertft.training.evaluate.predict_outputs`:
    an array, or a tuple of arrays, per example) as one float32 array per output of the head:
    ``(n, ...)``; ``per_token`` outputs (first axis: positions, as wide as the example's batch)
    padded to ``max_len`` positions with :data:`PAD_SCORE`."""
    first = outputs[0]
    count = len(first) if isinstance(first, tuple) else 1
    columns = []
    for k in range(count):
        parts = [o[k] if isinstance(o, tuple) else o for o in outputs]
        if per_token:
            shape = (len(parts), max_len) + onp.shape(parts[0])[1:]
            out = onp.full(shape, PAD_SCORE, dtype=onp.float32)
            for i, p in enumerate(parts):
                out[i, :len(p)] = p
        else:
            out = onp.stack(parts).astype(onp.float32)
        columns.append(out)
    return columns


def batch_labels(hard, labelled, teacher, per_token):
    """The flat label tuple of a distillation dataset (module docstring); the teacher's
    outputs without positions are :class:`~gluon_bertft.data.batching.PerExample` (never
    trimmed with the tokens)."""
    hard = hard if isinstance(hard, tuple) else (hard,)
    teacher = tuple(t if per_token else PerExample(t) for t in teacher)
    return (*hard, onp.asarray(labelled, dtype=onp.float32), *teacher)


def digest(*arrays):
    """SHA-1 of arrays' shapes, types and bytes (what identifies the teacher's inputs)."""
    h = hashlib.sha1()
    for a in arrays:
        a = onp.ascontiguousarray(a)
        h.update(f'{a.shape}{a.dtype}'.encode())
        h.update(a.tobytes())
    return h.hexdigest()


def params_digest(net):
    """SHA-1 of a network's parameters by name (what identifies the teacher)."""
    params = net._collect_params_with_prefix()
    h = hashlib.sha1(' '.join(sorted(params)).encode())
    h.update(digest(*(params[name].data().asnumpy() for name in sorted(params))).encode())
    return h.hexdigest()


def load_cache(path, key):
    """The teacher's outputs (a list of arrays) cached at ``path`` for ``key``, else None (no
    file, one for other inputs or another teacher, or a damaged one: truncated, not an
    ``.npz``, an array missing or pickled)."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with onp.load(path, allow_pickle=False) as f:
            if str(f['key']) != key:
                return None
            return [f[f'output{k}'] for k in range(int(f['count']))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


SPOT_ROWS = 8  # a cache is checked against the teacher's outputs for this many rows


class _FirstRows:
    """The first ``n`` examples of an encoded dataset (what batches are made of)."""

    def __init__(self, dataset, n):
        self.all_token_ids, self.all_segments = dataset.all_token_ids[:n], dataset.all_segments[:n]
        self.valid_lens = dataset.valid_lens[:n]
        self.labels = onp.zeros(len(self.valid_lens), dtype=onp.float32)

    def __len__(self):
        return len(self.valid_lens)


def cache_fits(columns, fresh, dataset):
    """Whether cached ``columns`` are the teacher's outputs for ``dataset``: as many float32
    arrays as ``fresh`` (the teacher's outputs for its first rows), of the same shapes but the
    rows, one row per example, finite, and equal to ``fresh`` on its rows within float rounding
    (outputs per token: on each example's tokens)."""
    n, lens = len(dataset), dataset.valid_lens.astype(int)
    width = dataset.all_token_ids.shape[1]
    if len(columns) != len(fresh):
        return False
    for cached, new in zip(columns, fresh):
        if cached.dtype != onp.float32 or cached.shape != (n,) + new.shape[1:]:
            return False
        if not onp.isfinite(cached[cached != PAD_SCORE]).all():
            return False
        per_token = new.ndim > 1 and new.shape[1] == width
        for i in range(len(new)):
            a, b = (cached[i, :lens[i]], new[i, :lens[i]]) if per_token else (cached[i], new[i])
            if not onp.allclose(a, b, rtol=1e-3, atol=1e-4):
                return False
    return True


def save_cache(path, key, columns):
    """Write the teacher's outputs with their ``key``, atomically."""
    with storage.atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            onp.savez(f, key=onp.array(key), count=onp.array(len(columns)),
                      **{f'output{k}': c for k, c in enumerate(columns)})


def teacher_outputs(teacher, dataset, compute, where, cache=None, log=print):
    """The teacher's outputs for every example of ``dataset`` (float32 arrays, one per output
    of its head, rows in the dataset's order): ``compute(dataset)`` (the teacher's fast
    inference copy on length-sorted batches, :func:`stack_outputs`) run once and cached at
    ``cache`` (a ``.npz`` file, keyed by the SHA-1 of ``teacher``'s parameters and of the
    encoded inputs): reused by every epoch, a resumed run, and other students on the same
    data. A cache read back is checked (:func:`cache_fits`, against ``compute`` on its first
    :data:`SPOT_ROWS` rows); a damaged one is computed again and replaced. ``where`` names the
    teacher in the ``DataError`` raised for non-finite outputs."""
    key = (f'v{CACHE_VERSION} {params_digest(teacher)} '
           f'{digest(dataset.all_token_ids, dataset.all_segments, dataset.valid_lens)}')
    columns = load_cache(cache, key)
    if columns is not None:
        if cache_fits(columns, compute(_FirstRows(dataset, SPOT_ROWS)), dataset):
            log(f"teacher's outputs: read from {cache}")
            return columns
        log(f"teacher's outputs in {cache}: not this teacher's for these rows (damaged); "
            'computed again')
    columns = compute(dataset)
    for c in columns:
        if not onp.isfinite(c[c != PAD_SCORE]).all():
            raise DataError(f'{where}: the teacher gives non-finite scores')
    if cache:
        save_cache(cache, key, columns)
        log(f"teacher's outputs: computed for {len(dataset)} examples, cached in {cache}")
    return columns
