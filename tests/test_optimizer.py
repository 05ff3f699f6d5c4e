"""LazyEmbeddingAdam: Adam on the rows a batch uses, plain Adam everywhere else."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np
from test_train import LOSS, classifier, quiet

from gluon_bertft.common.errors import ConfigError
from gluon_bertft.data.batching import BatchIter
from gluon_bertft.data.snli import SNLIBERTDataset
from gluon_bertft.training import precision
from gluon_bertft.training.loop import train
from gluon_bertft.training.optimizer import LazyEmbeddingAdam
from gluon_bertft.training.trainer import make_trainer

VOCAB, DIM = 12, 3


def embedding_net(seed=0):
    net = gluon.nn.Embedding(VOCAB, DIM)
    mx.random.seed(seed)
    net.initialize(mx.init.Normal(1.0))
    return net


def run(steps, optimizer, lazy=True):
    """Train a bare embedding on ``steps`` (lists of token ids); returns its weights."""
    net = embedding_net()
    trainer = gluon.Trainer(net.collect_params(), optimizer)
    if isinstance(optimizer, LazyEmbeddingAdam) and lazy:
        optimizer.mark_lazy([net.weight])
    for ids in steps:
        tokens = np.array(ids, dtype='int32')
        with autograd.record():
            loss = (net(tokens) ** 2).sum() + net(tokens).sum()
        loss.backward()
        if isinstance(optimizer, LazyEmbeddingAdam):
            optimizer.use_rows(tokens)
        trainer.step(len(ids))
    return net.weight.data().asnumpy()


def test_without_lazy_rows_it_is_mxnets_adam():
    steps = [[1, 2, 2], [3, 4], [1, 5]]
    expected = run(steps, mx.optimizer.Adam(learning_rate=0.1))
    onp.testing.assert_array_equal(run(steps, LazyEmbeddingAdam(learning_rate=0.1), lazy=False),
                                   expected)


def test_used_rows_follow_adam_and_unused_rows_stay():
    initial = embedding_net().weight.data().asnumpy()
    # rows 1 and 2 are used every step: exactly Adam; row 3 only in the first step
    steps = [[1, 2, 3], [1, 2, 2], [2, 1]]
    adam = run(steps, mx.optimizer.Adam(learning_rate=0.1))
    lazy = run(steps, LazyEmbeddingAdam(learning_rate=0.1))
    # MXNet's adam_update kernel is ~7e-7 per step (lr 0.1) off Adam's formula in float64; ours is
    # within 2e-8 of it
    onp.testing.assert_allclose(lazy[[1, 2]], adam[[1, 2]], rtol=0, atol=1e-5)
    onp.testing.assert_array_equal(lazy[[0, 4, 5]], initial[[0, 4, 5]])  # never used
    one_step = run(steps[:1], LazyEmbeddingAdam(learning_rate=0.1))
    onp.testing.assert_array_equal(lazy[3], one_step[3])  # lazy: frozen after its last use
    assert not onp.allclose(adam[3], one_step[3])  # Adam keeps moving it on its momentum


def test_make_trainer_updates_only_the_batchs_embedding_rows(sample, vocab):
    net = classifier(vocab)
    net.hybridize()
    ds = SNLIBERTDataset(tuple(c[:64] for c in sample), 64, vocab)
    before = net.encoder.token_embedding.weight.data().asnumpy()
    train(net, BatchIter.from_dataset(ds, 64), None, LOSS,
          make_trainer(net, 1e-2, lazy_embedding=True), 1,
          [mx.cpu()], log=quiet, progress=False)
    after = net.encoder.token_embedding.weight.data().asnumpy()
    changed = onp.flatnonzero(onp.abs(after - before).max(axis=1) > 0)
    used = onp.unique(ds.all_token_ids)
    assert set(changed) <= set(used) and len(changed) > 0.9 * len(used)
    assert len(used) < len(vocab)  # rows outside the batch exist and stayed


@pytest.mark.slow
def test_lazy_and_book_adam_learn_alike(sample, vocab):
    """Two epochs on 256 pairs: same loss curve within noise, lazy or the book's Adam."""
    ds = SNLIBERTDataset(tuple(c[:256] for c in sample), 64, vocab)
    losses = {}
    for lazy in (True, False):
        net = classifier(vocab)
        net.hybridize()
        losses[lazy] = train(net, BatchIter.from_dataset(ds, 32, shuffle=True, seed=1), None, LOSS,
                             make_trainer(net, 1e-3, lazy_embedding=lazy), 2, [mx.cpu()],
                             log=quiet, progress=False)['train_loss']
    assert losses[True] == pytest.approx(losses[False], abs=0.02)


def test_trainer_states_keep_the_lazy_rows_setting(tmp_path):
    net = embedding_net()
    optimizer = LazyEmbeddingAdam(learning_rate=0.1)
    trainer = gluon.Trainer(net.collect_params(), optimizer)
    optimizer.mark_lazy([net.weight])
    with autograd.record():
        loss = net(np.array([1, 2], dtype='int32')).sum()
    loss.backward()
    optimizer.use_rows(np.array([1, 2]))
    trainer.step(2)
    trainer.save_states(str(tmp_path / 'states'))
    fresh = gluon.Trainer(net.collect_params(), LazyEmbeddingAdam(learning_rate=0.1))
    fresh.load_states(str(tmp_path / 'states'))
    assert isinstance(fresh.optimizer, LazyEmbeddingAdam)
    assert fresh.optimizer.lazy_indices == {0}
    assert fresh.optimizer._rows is None  # the rows of a batch are not saved


def test_loss_scale_changes_nothing_but_the_gradients_scale(sample, vocab):
    """The float16 recipe's loss scaling, checked in float32: same parameters as unscaled."""
    ds = SNLIBERTDataset(tuple(c[:128] for c in sample), 64, vocab)
    params = []
    for scale in (1.0, precision.LOSS_SCALE):
        net = classifier(vocab)
        train(net, BatchIter.from_dataset(ds, 32), None, precision.float32_loss(LOSS),
              make_trainer(net, 1e-3), 1, [mx.cpu()], log=quiet, progress=False, loss_scale=scale)
        params.append([p.data().asnumpy() for p in net.collect_params().values()])
    for a, b in zip(*params):
        onp.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_float16_is_refused_on_cpus_and_unknown_dtypes_are_named():
    with pytest.raises(ConfigError, match=r'--dtype float16 needs GPUs.*cpu\(0\)'):
        precision.check_dtype('float16', [mx.cpu()])
    with pytest.raises(ConfigError, match="--dtype 'bfloat16'"):
        precision.check_dtype('bfloat16', [mx.cpu()])
    precision.check_dtype('float16', [mx.gpu(0), mx.gpu(1)])
    precision.check_dtype('float32', [mx.cpu()])
