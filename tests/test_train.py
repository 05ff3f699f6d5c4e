"""The fine-tuning loop (the book's train_ch13 over devices), evaluation, freezing, the trainer."""
import mxnet as mx
import numpy as onp
import pytest
from conftest import SAMPLE, shared_file, tiny_bert
from mxnet import gluon, np

from gluon_bertft.data.batching import BatchIter, make_iter
from gluon_bertft.data.snli import SNLIBERTDataset, read_snli
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.finetune import split_rows
from gluon_bertft.models.heads import BERTClassifier
from gluon_bertft.training.devices import set_seed
from gluon_bertft.training.evaluate import evaluate_accuracy, predict_outputs
from gluon_bertft.training.loop import train
from gluon_bertft.training.trainer import freeze, make_trainer

LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def classifier(vocab, devices=(mx.cpu(),), dropout=0.0, seed=0, **cfg):
    bert = tiny_bert(len(vocab), dropout=dropout, seed=seed, **cfg)
    bert.collect_params().reset_ctx(list(devices))
    net = BERTClassifier(bert)
    mx.random.seed(seed + 1)
    net.output.initialize(mx.init.Normal(0.2), ctx=list(devices))
    return net


@pytest.fixture(scope='module')
def small(sample, vocab):
    return SNLIBERTDataset(tuple(c[:256] for c in sample), 64, vocab)


def quiet(*args):
    pass


def test_trimmed_batches_give_the_same_logits_as_padded_to_128(sample, vocab):
    """The fast path's trimming changes nothing but speed (dropout off)."""
    net = classifier(vocab, max_len=128)
    net.hybridize(static_alloc=True, static_shape=True)
    ds = SNLIBERTDataset(tuple(c[:300] for c in sample), 128, vocab)
    logits = lambda trim: onp.concatenate([net(x).asnumpy() for x, _ in
                                           BatchIter.from_dataset(ds, 64, trim=trim)])
    padded, trimmed = logits(False), logits(True)
    assert onp.abs(padded - trimmed).max() < 1e-5


def test_length_sorted_prediction_comes_back_in_the_dataset_order(small, vocab):
    """``predict_outputs`` over length-sorted batches (less padding) restores the order."""
    net = classifier(vocab)
    in_order = predict_outputs(net, make_iter(small, 32, False), [mx.cpu()], progress=False)
    restored = predict_outputs(net, make_iter(small, 32, False, sort=True), [mx.cpu()],
                               progress=False)
    assert onp.abs(onp.stack(in_order) - onp.stack(restored)).max() < 1e-5
    assert not onp.array_equal(onp.argsort(small.valid_lens, kind='stable'), onp.arange(len(small)))


def test_hybridized_classifier_equals_imperative(small, vocab):
    net = classifier(vocab)
    x, _ = next(iter(BatchIter.from_dataset(small, 32)))
    expected = net(x)
    net.hybridize(static_alloc=True, static_shape=True)
    assert float(np.abs(net(x) - expected).max()) < 1e-5
    assert net.encoder._cached_op is not None


def run(vocab, ds, devices, steps_epochs=2, **kwargs):
    net = classifier(vocab, devices=devices)
    net.hybridize()
    trainer = make_trainer(net, 1e-3, **kwargs)
    history = train(net, BatchIter.from_dataset(ds, 64, shuffle=True, num_buckets=2, seed=1),
                    BatchIter.from_dataset(ds, 128), LOSS, trainer, steps_epochs, list(devices),
                    log=quiet, progress=False)
    return net, history


@pytest.mark.slow
def test_two_cpu_contexts_train_like_one(small, vocab):
    one, h1 = run(vocab, small, [mx.cpu(0)])
    two, h2 = run(vocab, small, [mx.cpu(0), mx.cpu(1)])
    assert h1['train_loss'] == pytest.approx(h2['train_loss'], abs=1e-4)
    for (name, a), b in zip(one._collect_params_with_prefix().items(),
                            two._collect_params_with_prefix().values()):
        assert b.list_ctx() == [mx.cpu(0), mx.cpu(1)]
        assert onp.abs(a.data().asnumpy() - b.data(mx.cpu(1)).asnumpy()).max() < 1e-4, name


def test_freeze_trains_only_the_top_blocks_and_the_head(small, vocab):
    net = classifier(vocab)
    before = {n: p.data().copy() for n, p in net._collect_params_with_prefix().items()}
    trainer = make_trainer(net, 1e-3, num_trainable_blocks=1)
    train(net, BatchIter.from_dataset(small, 64), BatchIter.from_dataset(small, 128), LOSS, trainer,
          1, [mx.cpu()], log=quiet, progress=False)
    for name, param in net._collect_params_with_prefix().items():
        changed = float(np.abs(param.data() - before[name]).max()) > 0
        frozen = name.startswith('encoder.') and not name.startswith('encoder.blks.1.')
        assert changed != frozen, name
        assert (param.grad_req == 'null') == frozen and (param._grad is None) == frozen, name
    with pytest.raises(ValueError, match='num_trainable_blocks=3: must be in 0..2'):
        freeze(classifier(vocab), 3)


@pytest.mark.slow
def test_validation_keeps_the_best_epoch(small, vocab):
    net = classifier(vocab)
    train_ds = SNLIBERTDataset(tuple(c[:200] for c in read_snli(SAMPLE)), 64, vocab)
    valid, test = BatchIter.from_dataset(small, 128), make_iter(train_ds, 128, False)
    validate = lambda net: ('accuracy', evaluate_accuracy(net, valid, [mx.cpu()]))
    lines = []
    history = train(net, BatchIter.from_dataset(train_ds, 32, shuffle=True), test, LOSS,
                    make_trainer(net, 3e-3), 4, [mx.cpu()], validate=validate, log=lines.append)
    best = history['best_epoch']
    assert history['valid_metric'] == 'accuracy' and len(history['valid']) == 4
    assert history['valid'][best - 1] == max(history['valid'])
    assert evaluate_accuracy(net, valid, [mx.cpu()]) == pytest.approx(max(history['valid']))
    assert evaluate_accuracy(net, test, [mx.cpu()]) == pytest.approx(history['test_acc'][best - 1])
    assert sum(', valid accuracy ' in line for line in lines) == 4
    if best != 4:
        assert f'kept epoch {best} (best valid accuracy {max(history["valid"]):.3f})' in lines


@pytest.mark.slow
def test_finetuning_real_pairs_lowers_loss_and_beats_chance():
    """A 2-block BERT from random initialization on ~7,900 real SNLI pairs, 2 epochs."""
    rows = list(zip(*read_snli(shared_file('snli', 'snli_1.0_dev.jsonl'))))
    set_seed(0)
    train_data, test_data = (tuple(map(list, zip(*part))) for part in split_rows(rows, 0.2, 0))
    vocab = build_vocab(train_data[0] + train_data[1])
    net = classifier(vocab, dropout=0.1, num_hiddens=64, ffn_num_hiddens=128, init=mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    history = train(net, make_iter(SNLIBERTDataset(train_data, 64, vocab), 32, True),
                    make_iter(SNLIBERTDataset(test_data, 64, vocab), 256, False), LOSS,
                    make_trainer(net, 1e-3), 2, [mx.cpu()], log=quiet)
    assert history['train_loss'][1] < history['train_loss'][0] - 0.02
    # 1,968 held-back pairs: chance is 1/3 with a standard error of about 0.011
    assert history['test_acc'][-1] > 0.42
