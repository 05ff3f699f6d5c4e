import json
import os
import sys

import numpy as onp
import pytest
from conftest import ROOT, shared_file
from d2l import mxnet as d2l

sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import book_reference  # noqa: E402 (benchmarks/: the book's code, verbatim)

from gluon_bertft.data.snli import (DataError, SNLIBERTDataset, encode_pairs, read_snli,
                                    truncated_lengths)

HEADER = ('gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t'
          'sentence2_parse\tsentence1\tsentence2\tcaptionID\tpairID\tlabel1\tlabel2\tlabel3\t'
          'label4\tlabel5\n')


def txt_row(label, p, h):
    return '\t'.join([label, p, h, '(ROOT)', '(ROOT)', 'x', 'y', 'c', 'p', label, '', '', '', '']) + '\n'


class BookSNLIBERTDataset(book_reference.BookSNLIBERTDataset):
    """The book's §16.7 ``SNLIBERTDataset`` (``benchmarks/book_reference.py``, verbatim) with
    ``pool.map`` -> ``map`` and NumPy arrays: no worker processes in a test."""

    def _preprocess(self, all_premise_hypothesis_tokens):
        out = list(map(self._mp_worker, all_premise_hypothesis_tokens))
        self.labels = self.labels.asnumpy()
        return tuple(onp.array(column, dtype=dtype)
                     for column, dtype in zip(zip(*out), ('int32', 'int32', None)))


def test_read_jsonl_sample(sample):
    premises, hypotheses, labels = sample
    assert len(premises) == len(hypotheses) == len(labels) == 2000
    assert onp.bincount(labels).tolist() == [664, 657, 679]  # entailment, contradiction, neutral
    assert premises[0] == 'A man in a black hat and jacket is sitting down .'


def test_read_shared_dev():
    premises, _, labels = read_snli(shared_file('snli', 'snli_1.0_dev.jsonl'))
    assert len(premises) == 9842
    assert onp.bincount(labels).tolist() == [3329, 3278, 3235]


def test_read_txt_strips_brackets_and_drops_unlabelled(tmp_path):
    path = tmp_path / 'snli_1.0_test.txt'
    path.write_text(HEADER + txt_row('neutral', '( ( A man ) ( sleeps . ) )', '( He  dreams . )')
                    + txt_row('-', '( x )', '( y )')
                    + txt_row('contradiction', '( Dogs run )', '( Cats . )'))
    assert read_snli(str(path)) == (['A man sleeps .', 'Dogs run'], ['He dreams .', 'Cats .'], [2, 1])


def test_jsonl_prefers_binary_parse(tmp_path):
    path = tmp_path / 'x.jsonl'
    path.write_text(json.dumps({'gold_label': 'entailment', 'sentence1': 'A man.',
                                'sentence1_binary_parse': '( A ( man . ) )',
                                'sentence2': 'B', 'sentence2_binary_parse': 'B'}) + '\n')
    assert read_snli(str(path)) == (['A man .'], ['B'], [0])


@pytest.mark.parametrize('row, message', [
    ('entailment\tonly two\n', ':3: 2 columns, expected 14'),
    (txt_row('maybe', '( a )', '( b )'), ":3: unknown label 'maybe'"),
    (txt_row('neutral', '( )', '( b )'), ':3: empty premise'),
])
def test_malformed_txt_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / 'snli_1.0_train.txt'
    path.write_text(HEADER + txt_row('neutral', '( a )', '( b )') + row)
    with pytest.raises(DataError, match=f'snli_1.0_train.txt{message}'):
        read_snli(str(path))


@pytest.mark.parametrize('line, message', [
    ('{"gold_label": "neutral", "sentence1": "a"}', ":2: missing field 'sentence2'"),
    ('{not json', ':2: invalid JSON'),
    ('{"gold_label": "neutral", "sentence1": "a", "sentence2": " "}', ':2: empty hypothesis'),
])
def test_malformed_jsonl_rows(tmp_path, line, message):
    path = tmp_path / 'bad.jsonl'
    path.write_text('{"gold_label": "neutral", "sentence1": "a", "sentence2": "b"}\n' + line + '\n')
    with pytest.raises(DataError, match=f'bad.jsonl{message}'):
        read_snli(str(path))


def test_truncation_matches_the_books_loop_on_all_small_lengths():
    for budget in (0, 1, 2, 7, 10):
        for lp in range(15):
            for lh in range(15):
                p, h = list(range(lp)), list(range(lh))
                while len(p) + len(h) > budget:
                    (p if len(p) > len(h) else h).pop()
                a, b = truncated_lengths([lp], [lh], budget)
                assert (a[0], b[0]) == (len(p), len(h))


@pytest.mark.parametrize('max_len', [128, 20, 8])
def test_dataset_equals_the_books_algorithm(sample, vocab, max_len):
    ours = SNLIBERTDataset(sample, max_len, vocab)
    book = BookSNLIBERTDataset(sample, max_len, vocab)
    assert ours.all_token_ids.dtype == book.all_token_ids.dtype == onp.int32
    onp.testing.assert_array_equal(ours.all_token_ids, book.all_token_ids)
    onp.testing.assert_array_equal(ours.all_segments, book.all_segments)
    onp.testing.assert_array_equal(ours.valid_lens, book.valid_lens)
    onp.testing.assert_array_equal(ours.labels, book.labels)


def test_dataset_items_and_unknown_words(vocab):
    ds = SNLIBERTDataset((['A Zyzzyva sleeps'], ['it sleeps'], [1]), 10, vocab)
    (tokens, segments, valid_len), label = ds[0]
    assert vocab.to_tokens(list(tokens)) == ['<cls>', 'a', '<unk>', 'sleeps', '<sep>', 'it',
                                             'sleeps', '<sep>', '<pad>', '<pad>']
    assert segments.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert (valid_len, label) == (8, 1)


def test_empty_dataset_and_tiny_max_len_are_errors(vocab):
    with pytest.raises(DataError, match='empty'):
        SNLIBERTDataset(([], [], []), 128, vocab)
    with pytest.raises(ValueError, match='max_len=2'):
        encode_pairs(['a'], ['b'], vocab, 2)


def test_encoding_equals_the_books_on_odd_whitespace_and_case():
    """One lower() and split() over the joined text tokenizes as the book does per sentence."""
    premises = ['  Two\tdogs  run ', 'İSTANBUL ΟΔΟΣ at night', 'one', 'Ⅻ ǅ ß\u00a0x']
    hypotheses = ['dogs\nrun', 'a ΣΑΣ', '  ', 'ǅungla']
    tokens = [t for s in premises + hypotheses for t in s.lower().split()]
    vocab = d2l.Vocab([tokens[::2]], reserved_tokens=['<pad>', '<mask>', '<cls>', '<sep>'])
    data = (premises, hypotheses, [0, 1, 2, 0])
    ours, book = SNLIBERTDataset(data, 12, vocab), BookSNLIBERTDataset(data, 12, vocab)
    onp.testing.assert_array_equal(ours.all_token_ids, book.all_token_ids)
    onp.testing.assert_array_equal(ours.all_segments, book.all_segments)
    onp.testing.assert_array_equal(ours.valid_lens, book.valid_lens)
