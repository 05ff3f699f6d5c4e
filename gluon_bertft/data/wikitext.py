"""WikiText-2 for BERT pretraining (D2L §15.9): paragraphs, next-sentence pairs, masked-LM targets.

:func:`read_wiki` and :class:`WikiTextDataset` have the semantics of d2l's ``_read_wiki`` and
``_WikiTextDataset`` and draw the same numbers from Python's ``random`` in the same order, so
after the same ``random.seed`` they give exactly d2l's arrays. They are faster: tokens become
ids through one dict lookup each, and the padded arrays are numpy arrays filled in place
instead of seven MXNet arrays per example.
"""
import math
import os
import random

import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon, np

from ..common.errors import DataError
from ..common.files import decoded_lines
from .tokenize import RESERVED_TOKENS

MIN_FREQ = 5
TRAIN_FILE = 'wiki.train.tokens'


def corpus_file(path):
    """The text file of a corpus: ``path`` itself, or ``path/wiki.train.tokens`` for a folder."""
    file = os.path.join(path, TRAIN_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise DataError(f'{path}: no such file, nor a folder holding {TRAIN_FILE}')
    return file


def read_wiki(path, shuffle=True, encoding='utf-8'):
    """The book's ``_read_wiki``: lower-cased paragraphs as lists of ``' . '``-separated sentences.

    ``path`` is a WikiText file or a folder with ``wiki.train.tokens``. Lines with at least two
    sentences are kept; with ``shuffle`` their order is shuffled with ``random`` as the book does.
    """
    file = corpus_file(path)
    lines = decoded_lines(file, encoding)
    if not any(line.strip() for line in lines):
        raise DataError(f'{file}: the corpus is empty')
    paragraphs = [line.strip().lower().split(' . ')
                  for line in lines if len(line.split(' . ')) >= 2]
    if not any(len(p) >= 2 for p in paragraphs):
        raise DataError(f'{file}: no paragraph (line) has two sentences separated by " . "; '
                        'next-sentence pairs need them')
    if shuffle:
        random.shuffle(paragraphs)
    return paragraphs


def nsp_pairs(paragraphs, max_len):
    """The book's ``_get_nsp_data_from_paragraph`` over all paragraphs: ``(a, b, is_next)``.

    ``paragraphs`` are lists of token lists. Half the time ``b`` is the next sentence, else a
    random sentence of a random paragraph; pairs longer than ``max_len`` with ``<cls>`` and two
    ``<sep>`` are dropped, as in the book.
    """
    pairs = []
    for paragraph in paragraphs:
        for i in range(len(paragraph) - 1):
            tokens_a, tokens_b, is_next = paragraph[i], paragraph[i + 1], True
            if random.random() >= 0.5:
                tokens_b, is_next = random.choice(random.choice(paragraphs)), False
            if len(tokens_a) + len(tokens_b) + 3 <= max_len:
                pairs.append((tokens_a, tokens_b, is_next))
    return pairs


def mask_tokens(token_ids, candidates, vocab_size, mask_id):
    """The book's ``_replace_mlm_tokens`` + ``_get_mlm_data_from_tokens`` on token ids.

    Picks ``max(1, round(15%))`` of the ``candidates`` positions; each becomes ``<mask>`` (80%),
    a random token of the vocabulary (10%) or stays (10%). Returns the input ids and the sorted
    ``(position, original id)`` pairs.
    """
    num_preds = max(1, round(len(token_ids) * 0.15))
    masked = list(token_ids)
    picked = []
    random.shuffle(candidates)
    for position in candidates[:num_preds]:
        if random.random() < 0.8:
            masked[position] = mask_id
        elif random.random() >= 0.5:
            # random.choice(vocab.idx_to_token) as in the book: the same draw, as an index
            masked[position] = random.choice(range(vocab_size))
        picked.append((position, token_ids[position]))
    return masked, sorted(picked)


class WikiTextDataset(gluon.data.Dataset):
    """The book's ``_WikiTextDataset``: vocabulary, NSP pairs, MLM targets, padded to ``max_len``.

    ``paragraphs``: lists of sentence strings (:func:`read_wiki`). Arrays (numpy, one row per
    example) as in the book: ``all_token_ids``, ``all_segments`` (int32, (n, max_len)),
    ``valid_lens`` (float32, (n,)), ``all_pred_positions``, ``all_mlm_labels`` (int32,
    (n, round(0.15 max_len))), ``all_mlm_weights`` (float32, same shape), ``nsp_labels``
    (float32, (n,): 1 where the second sentence is the real next one). ``vocab`` is built with
    ``min_freq=5`` and the reserved tokens ``<pad> <mask> <cls> <sep>``, unless one is given
    (e.g. a pretrained model's, to measure its loss on held-out text).
    """

    def __init__(self, paragraphs, max_len, vocab=None):
        if max_len < 5:
            raise ValueError(f'max_len={max_len}: too small; a pair needs <cls>, <sep>, <sep> '
                             'and at least one token per sentence (max_len >= 5)')
        paragraphs = [d2l.tokenize(paragraph, token='word') for paragraph in paragraphs]
        self.vocab = vocab or d2l.Vocab([s for p in paragraphs for s in p], min_freq=MIN_FREQ,
                                        reserved_tokens=RESERVED_TOKENS)
        if len(self.vocab) == len(RESERVED_TOKENS) + 1:
            raise DataError(f'corpus too small: no token occurs {MIN_FREQ} times or more')
        pairs = nsp_pairs(paragraphs, max_len)
        if not pairs:
            raise DataError(f'corpus too small: no sentence pair fits max_len={max_len} '
                            '(with <cls> and two <sep>)')
        self.max_len = max_len
        self._fill(pairs, max_len)

    def _fill(self, pairs, max_len):
        """Encode, mask and pad every pair into the numpy arrays."""
        to_idx, unk = self.vocab.token_to_idx, self.vocab.unk
        pad, mask, cls, sep = (to_idx[t] for t in RESERVED_TOKENS)
        n, num_preds = len(pairs), round(max_len * 0.15)
        self.all_token_ids = onp.full((n, max_len), pad, dtype=onp.int32)
        self.all_segments = onp.zeros((n, max_len), dtype=onp.int32)
        self.valid_lens = onp.zeros(n, dtype=onp.float32)
        self.all_pred_positions = onp.zeros((n, num_preds), dtype=onp.int32)
        self.all_mlm_weights = onp.zeros((n, num_preds), dtype=onp.float32)
        self.all_mlm_labels = onp.zeros((n, num_preds), dtype=onp.int32)
        self.nsp_labels = onp.array([is_next for _, _, is_next in pairs], dtype=onp.float32)
        for row, (tokens_a, tokens_b, _) in enumerate(pairs):
            ids = [cls] + [to_idx.get(t, unk) for t in tokens_a] + [sep] \
                + [to_idx.get(t, unk) for t in tokens_b] + [sep]
            # every position but <cls>/<sep> (also where the text itself holds those tokens)
            candidates = [i for i, t in enumerate(ids) if t != cls and t != sep]
            masked, picked = mask_tokens(ids, candidates, len(self.vocab), mask)
            length, k = len(ids), len(picked)
            self.all_token_ids[row, :length] = masked
            self.all_segments[row, len(tokens_a) + 2:length] = 1
            self.valid_lens[row] = length
            if k:
                self.all_pred_positions[row, :k], self.all_mlm_labels[row, :k] = zip(*picked)
                self.all_mlm_weights[row, :k] = 1

    def arrays(self):
        """The seven arrays in the order of the book's items."""
        return (self.all_token_ids, self.all_segments, self.valid_lens, self.all_pred_positions,
                self.all_mlm_weights, self.all_mlm_labels, self.nsp_labels)

    def __getitem__(self, idx):
        return tuple(a[idx] for a in self.arrays())

    def __len__(self):
        return len(self.all_token_ids)


class PretrainIter:
    """Mini-batches of a :class:`WikiTextDataset` as seven MXNet arrays, resumable at any batch.

    The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so
    ``iter_from(epoch, batch)`` continues exactly where an interrupted run stopped. With
    ``trim`` each batch is cut to its longest pair (rounded up to ``round_to``) instead of
    ``max_len``: padding is masked out, so only the speed changes.
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, trim=True, round_to=8):
        """``dataset``: a :class:`WikiTextDataset`, or its seven arrays (a worker's shard)."""
        if batch_size <= 0:
            raise ValueError(f'batch_size={batch_size}: must be positive')
        self.arrays = dataset.arrays() if hasattr(dataset, 'arrays') else tuple(dataset)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.trim, self.round_to = trim, round_to

    def __len__(self):
        return math.ceil(len(self.arrays[0]) / self.batch_size)

    def __iter__(self):
        return self.iter_from(0, 0)

    def iter_from(self, epoch, first_batch):
        """Batches of ``epoch`` starting at batch number ``first_batch``."""
        n = len(self.arrays[0])
        order = (onp.random.RandomState([self.seed, epoch]).permutation(n) if self.shuffle
                 else onp.arange(n))
        for start in range(first_batch * self.batch_size, n, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])

    def _batch(self, idx):
        tokens, segments, valid_lens = (a[idx] for a in self.arrays[:3])
        if self.trim:
            # (batch, max_len) -> (batch, width): pred_positions all lie below valid_len
            width = -(-int(valid_lens.max()) // self.round_to) * self.round_to
            tokens, segments = tokens[:, :width], segments[:, :width]
        rest = (a[idx] for a in self.arrays[3:])
        return tuple(np.array(a, dtype=a.dtype) for a in (tokens, segments, valid_lens, *rest))
