"""SNLI: readers for the official ``.txt`` and ``.jsonl`` files and the book's ``SNLIBERTDataset``."""
import collections
import json
import os
import re

import numpy as onp
from mxnet import gluon

LABELS = ('entailment', 'contradiction', 'neutral')  # the book's ids 0, 1, 2
LABEL_IDS = {name: i for i, name in enumerate(LABELS)}


from ..common.errors import DataError, shorten
from ..common.files import blank, decoded_lines, invisible, extension, json_object, parse_json


def _extract_text(s):
    """The book's ``extract_text``: drop parse brackets, squeeze whitespace."""
    s = re.sub('\\(', '', s)
    s = re.sub('\\)', '', s)
    s = re.sub('\\s{2,}', ' ', s)
    return s.strip()


def _keep(path, lineno, label, premise, hypothesis, out, keep_unlabelled=False, raw=False):
    where = f'{path}:{lineno}'
    unlabelled = label == '-' or (keep_unlabelled and label is None)
    if unlabelled and not keep_unlabelled:
        return  # no gold label: the book drops these pairs
    if not unlabelled and label not in LABEL_IDS:
        raise DataError(f'{where}: unknown label {shorten(label)} '
                        f'(expected one of {", ".join(LABELS)} or -)')
    for name, text in (('premise', premise), ('hypothesis', hypothesis)):
        if blank(text):
            raise DataError(f'{where}: empty {name}{invisible(text)}')
    out[0].append(premise)
    out[1].append(hypothesis)
    out[2].append(-1 if unlabelled else LABEL_IDS[label])  # for prediction: label id -1
    out[3].append(raw)


def _json_pair(line, path, lineno, keep_unlabelled):
    """``(label, premise, hypothesis, raw)`` of one ``.jsonl`` line, every field type checked;
    ``raw``: the texts are the ``sentence*`` fields, not the ``*_binary_parse`` ones (tokens)."""
    where = f'{path}:{lineno}'
    row = json_object(parse_json(line, path, lineno), where)
    if 'gold_label' not in row and not keep_unlabelled:
        raise DataError(f'{where}: missing field "gold_label"')
    texts = []
    for key in ('gold_label', 'sentence1', 'sentence2'):
        key = f'{key}_binary_parse' if f'{key}_binary_parse' in row else key  # as the book
        value = row.get(key)
        if key not in row and key != 'gold_label':
            raise DataError(f'{where}: missing field {shorten(key)}')
        if not (isinstance(value, str) or (value is None and key == 'gold_label' and keep_unlabelled)):
            raise DataError(f'{where}: field {shorten(key)} is {json.dumps(value)[:40]}, not a string')
        texts.append(value)
    raw = 'sentence1_binary_parse' not in row or 'sentence2_binary_parse' not in row
    return texts[0], _extract_text(texts[1]), _extract_text(texts[2]), raw


def read_snli(path, keep_unlabelled=False, encoding='utf-8', raw_flags=False):
    """Read an SNLI file into ``(premises, hypotheses, labels)`` like the book's ``read_snli``.

    ``path`` is an official ``snli_1.0_*.txt`` (tab-separated with a header; the binary-parse
    columns are used with brackets stripped) or ``.jsonl`` (``gold_label``, ``sentence1``,
    ``sentence2``; the ``*_binary_parse`` keys are used instead when present, as in the book).
    Pairs labelled ``-`` are dropped; labels are entailment 0, contradiction 1, neutral 2.
    ``keep_unlabelled`` (prediction) keeps them, and rows without a label, with id -1. Blank
    lines and a byte-order mark are skipped; errors name the file and line.

    ``raw_flags``: a fourth list, per pair whether its texts are raw sentences (the
    ``sentence1``/``sentence2`` fields of a ``.jsonl`` without parses) rather than a parse's
    tokens; the task splits raw text as SNLI's was
    (:func:`~gluon_bertft.data.tokenize.ptb`) before the book's whitespace tokens are taken.
    """
    out = ([], [], [], [])
    lines = decoded_lines(path, encoding)
    if extension(path) in ('.jsonl', '.json'):
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                label, premise, hypothesis, raw = _json_pair(line, path, lineno, keep_unlabelled)
                _keep(path, lineno, label, premise, hypothesis, out, keep_unlabelled, raw)
        return out if raw_flags else out[:3]
    if not any(line.strip() for line in lines):
        raise DataError(f'{path}: the file is empty')
    header = lines[0].rstrip('\r\n').split('\t')
    if header[:3] != ['gold_label', 'sentence1_binary_parse', 'sentence2_binary_parse']:
        raise DataError(f'{path}:1: not an SNLI .txt header (expected gold_label, '
                        f'sentence1_binary_parse, sentence2_binary_parse, ...); .jsonl files '
                        'need the .jsonl extension')
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        row = line.rstrip('\r\n').split('\t')
        if len(row) != len(header):
            raise DataError(f'{path}:{lineno}: {len(row)} columns, expected {len(header)}')
        _keep(path, lineno, row[0], _extract_text(row[1]), _extract_text(row[2]), out,
              keep_unlabelled)
    return out if raw_flags else out[:3]


def find_split(data_dir, split):
    """The file of ``split`` ('train', 'dev', 'test') in an SNLI folder (``.txt`` or ``.jsonl``)."""
    for ext in ('.txt', '.jsonl'):
        path = os.path.join(data_dir, f'snli_1.0_{split}{ext}')
        if os.path.exists(path):
            return path
    raise DataError(f'{data_dir}: no snli_1.0_{split}.txt or snli_1.0_{split}.jsonl')


def truncated_lengths(len_a, len_b, budget):
    """Lengths left by the book's ``_truncate_pair_of_tokens`` (pop from the longer side,
    the second on ties, until ``len_a + len_b <= budget``), for arrays of lengths at once."""
    len_a, len_b = onp.asarray(len_a, dtype=onp.int64), onp.asarray(len_b, dtype=onp.int64)
    excess = len_a + len_b - budget
    diff = onp.abs(len_a - len_b)
    # excess beyond the difference: both sides end at half the budget, the first rounded up
    both = excess > diff
    a = onp.where(both, (budget + 1) // 2, onp.where((excess > 0) & (len_a > len_b),
                                                     len_a - excess, len_a))
    b = onp.where(both, budget // 2, onp.where((excess > 0) & (len_a <= len_b),
                                               len_b - excess, len_b))
    return a, b


def _ids(sentences, token_to_idx, unk):
    """Flat token ids and per-sentence token counts of lower-cased whitespace-split sentences."""
    # One lower() and split() over the joined text and a C-level dict lookup per token: 3x
    # faster than a Python loop over sentences and d2l.Vocab.__getitem__ (measured, 550k pairs)
    # (lower() maps no character to or from whitespace, so the counts hold for the lowered text)
    lengths = onp.fromiter(map(len, map(str.split, sentences)), dtype=onp.int64,
                           count=len(sentences))
    lookup = collections.defaultdict(lambda: unk, token_to_idx)
    tokens = ' '.join(sentences).lower().split()
    flat = onp.fromiter(map(lookup.__getitem__, tokens), dtype=onp.int32, count=len(tokens))
    return flat, lengths


def _scatter(out, rows, starts, flat, offsets, counts):
    """``out[rows[i], starts[i] + j] = flat[offsets[i] + j]`` for ``j < counts[i]``, vectorized."""
    total = int(counts.sum())
    if total == 0:
        return
    first = onp.repeat(onp.cumsum(counts) - counts, counts)
    j = onp.arange(total) - first
    out[onp.repeat(rows, counts), onp.repeat(starts, counts) + j] = flat[onp.repeat(offsets, counts) + j]


def encode_pairs(premises, hypotheses, vocab, max_len):
    """Token ids, segments and valid lengths of the BERT inputs for sentence pairs.

    The book's algorithm (lower-case, whitespace tokens, truncate to ``max_len - 3``,
    ``<cls> a <sep> b <sep>``, ``<pad>`` to ``max_len``), computed for all pairs at once.
    Returns int32 ``(n, max_len)`` token ids and segments and float32 ``(n,)`` valid lengths.
    """
    if max_len < 3:
        raise ValueError(f'max_len={max_len}: needs at least 3 positions for <cls>, <sep>, <sep>')
    n = len(premises)
    unk = vocab.token_to_idx['<unk>']
    p_flat, p_len = _ids(premises, vocab.token_to_idx, unk)
    h_flat, h_len = _ids(hypotheses, vocab.token_to_idx, unk)
    a, b = truncated_lengths(p_len, h_len, max_len - 3)
    rows = onp.arange(n)
    tokens = onp.full((n, max_len), vocab.token_to_idx['<pad>'], dtype=onp.int32)
    cls, sep = vocab.token_to_idx['<cls>'], vocab.token_to_idx['<sep>']
    tokens[:, 0] = cls
    tokens[rows, a + 1] = sep
    tokens[rows, a + b + 2] = sep
    _scatter(tokens, rows, onp.ones(n, onp.int64), p_flat, onp.cumsum(p_len) - p_len, a)
    _scatter(tokens, rows, a + 2, h_flat, onp.cumsum(h_len) - h_len, b)
    valid_lens = a + b + 3
    positions = onp.arange(max_len)
    segments = ((positions >= (a + 2)[:, None]) & (positions < valid_lens[:, None])).astype(onp.int32)
    return tokens, segments, valid_lens.astype(onp.float32)


class SNLIBERTDataset(gluon.data.Dataset):
    """The book's ``SNLIBERTDataset``: same arrays, made without a process pool.

    ``dataset`` is ``(premises, hypotheses, labels)``; items are
    ``((token_ids, segments, valid_len), label)`` padded to ``max_len``. ``vocab`` is the
    book's word vocabulary, or a Hugging Face model's WordPiece tokenizer
    (:class:`~gluon_bertft.data.wordpiece.WordPiece`, e.g. MiniLM's), whose own pieces and
    truncation the pairs then get (as ``finetune --task snli`` gives them).
    """

    def __init__(self, dataset, max_len, vocab=None):
        premises, hypotheses, labels = dataset
        if not len(premises):
            raise DataError('SNLIBERTDataset: the dataset is empty')
        self.vocab = vocab
        self.max_len = max_len
        self.labels = onp.asarray(labels, dtype=onp.float32)
        if hasattr(vocab, 'encode_texts'):  # a WordPiece tokenizer (the tokenizer protocol)
            arrays = vocab.encode_texts(list(zip(premises, hypotheses)), max_len)
        else:
            arrays = encode_pairs(premises, hypotheses, vocab, max_len)
        self.all_token_ids, self.all_segments, self.valid_lens = arrays
        print('read ' + str(len(self.all_token_ids)) + ' examples')

    def __getitem__(self, idx):
        return (self.all_token_ids[idx], self.all_segments[idx],
                self.valid_lens[idx]), self.labels[idx]

    def __len__(self):
        return len(self.all_token_ids)
