"""Text classification and regression inputs: rows of one or two texts -> BERT arrays.

A pair is encoded exactly as the book encodes SNLI (:func:`snli.encode_pairs`); a single text
as ``<cls> tokens <sep>``, truncated to ``max_len - 2`` tokens, segments all 0 (§16.6).
"""
import numpy as onp

from ..common.errors import DataError, cut, shorten
from .snli import encode_pairs
from .tokenize import get_tokenizer


def encode_single(token_lists, vocab, max_len):
    """int32 ``(n, max_len)`` token ids and segments, float32 ``(n,)`` valid lengths."""
    if max_len < 2:
        raise ValueError(f'max_len={max_len}: needs at least 2 positions for <cls>, <sep>')
    n = len(token_lists)
    idx, unk = vocab.token_to_idx, vocab.token_to_idx['<unk>']
    tokens = onp.full((n, max_len), idx['<pad>'], dtype=onp.int32)
    valid_lens = onp.zeros(n, dtype=onp.float32)
    for i, words in enumerate(token_lists):
        ids = [idx['<cls>']] + [idx.get(t, unk) for t in words[:max_len - 2]] + [idx['<sep>']]
        tokens[i, :len(ids)] = ids
        valid_lens[i] = len(ids)
    return tokens, onp.zeros_like(tokens), valid_lens


def encode_texts(texts, vocab, max_len, tokenizer='whitespace'):
    """BERT inputs of ``texts``: a list of 1-tuples (single texts) or 2-tuples (pairs)."""
    tokenize = get_tokenizer(tokenizer)
    if len(texts[0]) == 1:
        return encode_single([tokenize(t[0]) for t in texts], vocab, max_len)
    # the pair path is the book's, whose lower().split() is the whitespace tokenizer; other
    # tokens are re-joined, which makes it a no-op
    first, second = ([t[k] if tokenizer == 'whitespace' else ' '.join(tokenize(t[k]))
                      for t in texts] for k in (0, 1))
    return encode_pairs(first, second, vocab, max_len)


def label_ids(rows, names):
    """float32 ids of the rows' labels in ``names``; an unknown label names its line."""
    index = {name: i for i, name in enumerate(names)}
    ids = onp.zeros(len(rows), dtype=onp.float32)
    for i, row in enumerate(rows):
        if row.label is None:  # standard input read as one-sentence-per-line files
            raise DataError(f'{row.where}: no label (the labels of one-sentence-per-line '
                            'files are their extensions)')
        if row.label not in index:
            raise DataError(f'{row.where}: unknown label {shorten(row.label)} (the model knows '
                            f'{cut(", ".join(map(repr, names)))})')
        ids[i] = index[row.label]
    return ids


def scores(rows):
    """float32 regression targets parsed from the rows' labels."""
    out = onp.zeros(len(rows), dtype=onp.float32)
    for i, row in enumerate(rows):
        try:
            out[i] = float(row.label)
        except ValueError:
            raise DataError(f'{row.where}: label {shorten(row.label)} is not a number (regression)') from None
        if not onp.isfinite(out[i]):
            raise DataError(f'{row.where}: label {shorten(row.label)} is not a finite number')
    return out


class TextDataset:
    """Encoded rows: ``all_token_ids``, ``all_segments``, ``valid_lens`` of the rows' ``texts``
    (1- or 2-tuples) through ``tokenizer`` (the protocol of :mod:`.words`), and the given
    ``labels`` (what :class:`batching.BatchIter` reads)."""

    def __init__(self, rows, tokenizer, max_len, labels):
        self.all_token_ids, self.all_segments, self.valid_lens = tokenizer.encode_texts(
            [row.texts for row in rows], max_len)
        self.labels = labels

    def __len__(self):
        return len(self.valid_lens)
