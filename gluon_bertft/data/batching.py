"""Batching: length buckets and trimming each batch to its longest example.

The book pads every pair to ``max_len`` (128) although SNLI pairs are ~25-30 tokens long;
trimming a batch to its longest pair gives the same logits (padding is masked out) for a
fraction of the compute. Trimmed lengths are rounded up to a multiple of ``round_to`` so the
hybridized graph sees few distinct shapes. On the 9,842 SNLI dev pairs at batch 32, real tokens
are 51% of a plain shuffle's trimmed batches, 78% with 8 length buckets and multiples of 8,
and 91% with the defaults of :func:`make_iter`, 32 buckets and
multiples of 4 (15 distinct shapes).
"""
import math

import numpy as onp
from mxnet import np


def length_buckets(lengths, batch_size, num_buckets, rng):
    """Batches of indices drawn from about ``num_buckets`` groups of similar length, in random order.

    Examples are shuffled, sorted by length (stable) and cut into groups whose sizes are
    multiples of ``batch_size`` (so only the last batch of all may be short); each group is
    shuffled and cut into batches, and the batches of all groups are shuffled.
    """
    order = rng.permutation(len(lengths))
    order = order[onp.argsort(lengths[order], kind='stable')]
    group_size = batch_size * math.ceil(len(order) / max(1, num_buckets) / batch_size)
    batches = []
    for start in range(0, len(order), group_size):
        group = order[start:start + group_size]
        rng.shuffle(group)
        batches.extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


class BatchIter:
    """Iterate ``((tokens, segments, valid_lens), labels)`` mini-batches as mxnet np arrays.

    Parameters
    ----------
    arrays : (tokens, segments, valid_lens, labels), numpy arrays with one row per example;
        ``labels`` may also be a tuple of such arrays (yielded as a tuple), and a label array
        with one column per token is trimmed with the tokens
    batch_size : examples per batch (the last batch may be smaller)
    shuffle : new random order each epoch (``seed`` fixes the sequence of orders)
    trim : cut each batch to its longest example (rounded up to ``round_to``) instead of
        keeping the padding to ``max_len`` as the book does
    num_buckets : with ``shuffle``, draw batches from this many length groups (0: plain shuffle)
    sort : without ``shuffle``, batch the examples in order of length (shortest first), so
        trimmed batches carry little padding; for evaluations whose result ignores order
    """

    def __init__(self, arrays, batch_size, shuffle=False, trim=True, num_buckets=0, round_to=4,
                 seed=0, sort=False):
        if batch_size <= 0:
            raise ValueError(f'batch_size={batch_size}: must be positive')
        if len(arrays[0]) == 0:
            raise ValueError('BatchIter: the dataset is empty')
        self.tokens, self.segments, self.valid_lens, self.labels = arrays
        self.batch_size, self.shuffle, self.trim = batch_size, shuffle, trim
        self.num_buckets, self.round_to, self.sort = num_buckets, round_to, sort
        self.rng = onp.random.RandomState(seed)
        self.epochs_drawn = 0  # orders drawn so far (shuffled: one per epoch)

    @classmethod
    def from_dataset(cls, dataset, batch_size, **kwargs):
        """From a dataset holding ``all_token_ids``, ``all_segments``, ``valid_lens``, ``labels``."""
        return cls((dataset.all_token_ids, dataset.all_segments, dataset.valid_lens,
                    dataset.labels), batch_size, **kwargs)

    def __len__(self):
        return math.ceil(len(self.tokens) / self.batch_size)

    def _batches(self):
        n = len(self.tokens)
        self.epochs_drawn += 1
        if self.shuffle and self.num_buckets > 1:
            return length_buckets(self.valid_lens, self.batch_size, self.num_buckets, self.rng)
        if self.shuffle:
            order = self.rng.permutation(n)
        elif self.sort:
            order = onp.argsort(self.valid_lens, kind='stable')
        else:
            order = onp.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def __iter__(self):
        return self._yield(self._batches())

    def iter_from(self, epoch, first_batch=0):
        """The batches of ``epoch`` (counted from 0) from number ``first_batch`` on. The orders
        of the epochs before are drawn first if they were not (not batched), so that a resumed
        run sees the order an uninterrupted one saw; an iterator that drew more (trained
        before) draws its next order."""
        while self.shuffle and self.epochs_drawn < epoch:
            self._batches()
        return self._yield(self._batches()[first_batch:])

    def _yield(self, batches):
        max_len = self.tokens.shape[1]
        for idx in batches:
            width = max_len
            if self.trim:
                longest = int(self.valid_lens[idx].max())
                width = min(max_len, -(-longest // self.round_to) * self.round_to)
            yield ((np.array(self.tokens[idx, :width], dtype='int32'),
                    np.array(self.segments[idx, :width], dtype='int32'),
                    np.array(self.valid_lens[idx], dtype='float32')),
                   _take(self.labels, idx, width))


class PerExample:
    """A label array whose rows are never trimmed with the tokens: its second axis is not a
    position (a teacher's class scores ``(n, classes)``, which :class:`BatchIter` would
    otherwise cut to the batch's width)."""

    def __init__(self, array):
        self.array = array


def _take(labels, idx, width):
    """Rows ``idx`` of a label array (its first ``width`` columns if it has one per token,
    unless it is :class:`PerExample`), or of each array of a tuple."""
    if isinstance(labels, tuple):
        return tuple(_take(column, idx, width) for column in labels)
    if isinstance(labels, PerExample):
        return np.array(labels.array[idx], dtype=labels.array.dtype)
    rows = labels[idx] if labels.ndim == 1 else labels[idx, :width]
    return np.array(rows, dtype=rows.dtype)


NUM_BUCKETS = 32  # length groups of the fast path's training batches
BATCHES_PER_BUCKET = 8  # at least: batches of one length group still mix many examples


def make_iter(dataset, batch_size, train_mode, *, book_batches=False, seed=0, sort=False):
    """Batches of an encoded dataset: trimmed and bucketed, or with ``book_batches`` padded to
    ``max_len`` in the book's plain shuffle (``--book-batches``; ``BatchIter``'s ``trim`` is
    its opposite).

    Training batches (``train_mode``) come from up to :data:`NUM_BUCKETS` length groups of at
    least :data:`BATCHES_PER_BUCKET` batches each (fewer groups for small datasets: very
    homogeneous batches slowed learning in short runs). ``sort`` (evaluation, not with book
    batches) batches examples by length: for metrics that ignore order.
    """
    fast = not book_batches
    num_buckets = min(NUM_BUCKETS, len(dataset) // (batch_size * BATCHES_PER_BUCKET))
    return BatchIter.from_dataset(dataset, batch_size, shuffle=train_mode, trim=fast,
                                  num_buckets=num_buckets if fast and train_mode else 0, seed=seed,
                                  sort=sort and fast and not train_mode)
