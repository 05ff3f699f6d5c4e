"""Batches: every example once, trimming, length buckets, sorted evaluation, label arrays."""
import numpy as onp
import pytest

from gluon_bertft.data.batching import BatchIter, make_iter
from gluon_bertft.data.snli import SNLIBERTDataset


@pytest.fixture(scope='module')
def dataset(sample, vocab):
    return SNLIBERTDataset(sample, 128, vocab)


def labels_seen(it):
    return onp.concatenate([y.asnumpy() for _, y in it])


@pytest.mark.parametrize('kwargs', [dict(shuffle=False), dict(shuffle=True), dict(sort=True),
                                    dict(shuffle=True, num_buckets=8)])
def test_every_example_once_per_epoch(dataset, kwargs):
    it = BatchIter.from_dataset(dataset, 64, **kwargs)
    seen = [x[0].asnumpy()[:, :3].tolist() for x, _ in it]
    assert sum(len(s) for s in seen) == len(dataset)
    assert len(seen) == len(it)
    assert sorted(labels_seen(it)) == sorted(dataset.labels)


def test_trim_cuts_to_longest_rounded_and_keeps_content(dataset):
    for (tokens, segments, valid_lens), _ in BatchIter.from_dataset(dataset, 100, round_to=8):
        width = tokens.shape[1]
        assert width % 8 == 0 and width - 8 < valid_lens.max() <= width
    first = next(iter(BatchIter.from_dataset(dataset, 100)))[0][0].asnumpy()
    onp.testing.assert_array_equal(first, dataset.all_token_ids[:100, :first.shape[1]])
    assert (dataset.all_token_ids[:100, first.shape[1]:] == dataset.vocab['<pad>']).all()


def test_book_batches_keep_max_len(dataset):
    (tokens, _, _), _ = next(iter(BatchIter.from_dataset(dataset, 10, trim=False)))
    assert tokens.shape == (10, 128)


def test_fast_batches_carry_little_padding_in_few_shapes(dataset):
    fast = make_iter(dataset, 32, True)  # 2,000 pairs: 7 buckets of 8+ batches
    plain = BatchIter.from_dataset(dataset, 32, shuffle=True)
    real = dataset.valid_lens.sum()
    real_share = lambda it: real / sum(x[0].size for x, _ in it)
    assert real_share(fast) > 0.8 and real_share(plain) < 0.6
    assert fast.num_buckets == 7
    assert len({x[0].shape[1] for x, _ in fast}) <= 16


def test_sorted_batches_grow_in_width_and_only_the_last_bucket_batch_is_short(dataset):
    widths = [x[0].shape[1] for x, _ in BatchIter.from_dataset(dataset, 64, sort=True)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    sizes = [len(y) for _, y in BatchIter.from_dataset(dataset, 64, shuffle=True, num_buckets=8)]
    assert sorted(sizes)[1:] == [64] * (len(sizes) - 1) and sum(sizes) == len(dataset)


def test_seeded_shuffles_repeat(dataset):
    order = lambda: labels_seen(BatchIter.from_dataset(dataset, 50, shuffle=True, num_buckets=4, seed=3))
    onp.testing.assert_array_equal(order(), order())


def test_bad_batch_size_and_empty(dataset):
    with pytest.raises(ValueError, match='batch_size=0: must be positive'):
        BatchIter.from_dataset(dataset, 0)
    empty = (onp.zeros((0, 4)), onp.zeros((0, 4)), onp.zeros(0), onp.zeros(0))
    with pytest.raises(ValueError, match='empty'):
        BatchIter(empty, 4)


def test_batches_trim_per_token_labels_and_keep_label_tuples():
    tokens = onp.arange(4 * 16, dtype=onp.int32).reshape(4, 16)
    valid_lens = onp.array([5, 3, 9, 4], dtype=onp.float32)
    per_token = onp.arange(4 * 16, dtype=onp.float32).reshape(4, 16)
    starts, ends = onp.arange(4, dtype=onp.float32), onp.arange(4, dtype=onp.float32) + 1
    (X, y), = BatchIter((tokens, tokens, valid_lens, per_token), 4, round_to=8)
    assert X[0].shape == y.shape == (4, 16)  # longest 9 -> 16
    (X, y), _ = BatchIter((tokens, tokens, valid_lens, (starts, ends)), 2, round_to=4)
    assert X[0].shape == (2, 8) and [a.asnumpy().tolist() for a in y] == [[0, 1], [1, 2]]
    (X, y), = BatchIter((tokens[1:2], tokens[1:2], valid_lens[1:2], per_token[1:2]), 1, round_to=4)
    assert y.shape == (1, 4) and y.asnumpy().tolist() == [per_token[1, :4].tolist()]
