"""§16.7 end to end: SNLI data, a pretrained (or random) BERT, ``BERTClassifier``, training, checkpoint.

This is what the CLI's ``finetune``/``evaluate``/``predict`` and the notebook call.
"""
import json
import os
import random

import mxnet as mx
import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon

from . import distributed, precision, pretrained
from .data.batching import BatchIter
from .data.snli import DataError, SNLIBERTDataset, find_split, read_snli
from .heads import BERTClassifier
from .train import default_devices, evaluate_accuracy, make_trainer, train

d2l.DATA_HUB.setdefault('SNLI', ('https://nlp.stanford.edu/projects/snli/snli_1.0.zip',
                                 '9fcde07509c7e87ec61c640c1b2753d9041758e4'))
RESERVED_TOKENS = ['<pad>', '<mask>', '<cls>', '<sep>']


def set_seed(seed):
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def snli_files(data='SNLI'):
    """(train, test) files of SNLI: the hub name ``'SNLI'`` (downloaded) or a folder."""
    if data == 'SNLI' and not os.path.exists(data):
        zip_path = pretrained.download('SNLI')
        folder = os.path.join(os.path.dirname(zip_path), 'snli_1.0')
        if not os.path.isdir(folder):
            d2l.extract(zip_path)
        data = folder
    if not os.path.isdir(data):
        raise DataError(f'{data}: not a folder with snli_1.0_train/_test files (give --train/--test)')
    return find_split(data, 'train'), find_split(data, 'test')


def split_off(dataset, fraction, seed):
    """Split ``(premises, hypotheses, labels)`` into a random (1 - fraction, fraction) pair."""
    n = len(dataset[2])
    order = onp.random.RandomState(seed).permutation(n)
    cut = n - int(round(n * fraction))
    pick = lambda idx: tuple([column[i] for i in idx] for column in dataset)
    return pick(order[:cut]), pick(order[cut:])


def head(dataset, n):
    return dataset if n is None else tuple(column[:n] for column in dataset)


def build_vocab(dataset):
    """A word vocabulary for random initialization: every lower-cased token of the pairs."""
    tokens = [s.lower().split() for s in dataset[0] + dataset[1]]
    return d2l.Vocab(tokens, min_freq=1, reserved_tokens=RESERVED_TOKENS)


def load_bert(source, preset, devices, dropout=0.1, vocab_data=None):
    """``(bert, vocab, config)`` from a hub name or path, or ``'random'`` initialization."""
    if source == 'random':
        vocab = build_vocab(vocab_data)
        config = dict(pretrained.PRESETS[preset], vocab_size=len(vocab))
        bert = pretrained.build_bert(config, dropout)
        bert.initialize(mx.init.Xavier(), ctx=devices)
        return bert, vocab, config
    bert, vocab = pretrained.load_pretrained_model(source, dropout=dropout, devices=devices,
                                                   preset=preset)
    return bert, vocab, bert_config(bert)


def bert_config(bert):
    enc = bert.encoder
    blk = enc.blks[0]
    vocab_size, num_hiddens = enc.token_embedding.weight.shape
    return dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                ffn_num_hiddens=blk.ffn.dense1.weight.shape[0], num_heads=blk.attention.num_heads,
                num_blks=len(enc.blks), max_len=enc.pos_embedding.shape[1])


NUM_BUCKETS = 32  # length groups of the fast path's training batches (see data/batching.py)
BATCHES_PER_BUCKET = 8  # at least: batches of one length group still mix many examples


def make_iter(dataset, batch_size, train_mode, fast, seed=0, sort=False):
    """Batches of an ``SNLIBERTDataset``: trimmed and bucketed when ``fast``, else as the book.

    Fast training batches come from up to :data:`NUM_BUCKETS` length groups of at least
    :data:`BATCHES_PER_BUCKET` batches each (fewer groups for small datasets: very
    homogeneous batches slowed learning in short runs). ``sort`` (fast evaluation only)
    batches examples by length: for metrics that ignore order.
    """
    num_buckets = min(NUM_BUCKETS, len(dataset) // (batch_size * BATCHES_PER_BUCKET))
    return BatchIter.from_dataset(dataset, batch_size, shuffle=train_mode, trim=fast,
                                  num_buckets=num_buckets if fast and train_mode else 0, seed=seed,
                                  sort=sort and fast and not train_mode)


def finetune_snli(train_file=None, test_file=None, data='SNLI', pretrained_model='bert.small',
                  preset='bert.small', num_epochs=5, batch_size=512, max_len=128, lr=1e-4,
                  max_examples=None, test_fraction=0.1, valid_fraction=0.0,
                  num_trainable_blocks=None, devices=None, seed=0, out=None, fast=True,
                  hybridize=True, dropout=0.1, animator=None, log=print, kvstore=None,
                  checkpoint_every=None, resume=False, dtype='float32',
                  lazy_embedding=False):
    """Fine-tune ``BERTClassifier`` on SNLI as §16.7 does; returns ``(net, vocab, history)``.

    Data: ``train_file``/``test_file`` (``.txt`` or ``.jsonl``); without ``test_file`` a
    ``test_fraction`` of the training pairs is held back; without ``train_file`` the
    ``data`` folder or hub name. ``max_examples`` caps the training pairs (after the split).
    ``pretrained_model``: hub name, path, or ``'random'`` (``preset`` gives its shape).
    With ``out`` the classifier, ``history.json`` and ``training_curve.png`` are written there.
    With ``checkpoint_every`` a :class:`TrainingCheckpoint` goes to ``out/checkpoint`` every
    that many steps and after every epoch; ``resume`` continues from it if there is one.
    ``kvstore``: ``'device'``, or ``'dist_sync'``/``'dist_device_sync'`` in a worker started by
    the launcher (the default there), which trains on its shard of the training pairs with
    ``batch_size`` as the global batch; only rank 0 evaluates and writes (:mod:`.distributed`).
    ``dtype='float16'``: mixed precision on GPUs (:mod:`.precision`); the saved classifier is
    float32. ``lazy_embedding``: see :func:`~gluon_bertft.train.make_trainer`.
    """
    if batch_size <= 0:
        raise ValueError(f'batch_size={batch_size}: must be positive')
    if checkpoint_every and not out:
        raise ValueError('checkpoint_every: give the output folder (out) to write checkpoints in')
    set_seed(seed)
    devices = devices or default_devices()
    precision.check_dtype(dtype, devices)
    if train_file is None:
        train_file, test_file = snli_files(data)
    train_data = read_snli(train_file)
    if test_file is None:
        train_data, test_data = split_off(train_data, test_fraction, seed)
    else:
        test_data = read_snli(test_file)
    train_data = head(train_data, max_examples)
    valid_data = None
    if valid_fraction:
        train_data, valid_data = split_off(train_data, valid_fraction, seed + 1)
    bert, vocab, config = load_bert(pretrained_model, preset, devices, dropout, train_data)
    log(f'BERT: {pretrained_model if pretrained_model != "random" else "random initialization (no pretraining)"}'
        f', {config["num_blks"]} blocks, {config["num_hiddens"]} hidden, {len(vocab)} tokens; '
        f'devices {devices}')
    kv, watchdog, rank, local_batch = kvstore or distributed.default_kvstore(), None, 0, batch_size
    if distributed.is_distributed(kv):
        kv, watchdog, train_data, local_batch = distributed.join(kv, train_data, batch_size)
        rank = kv.rank
        log(f'worker {rank} of {kv.num_workers} ({kv.type}): {len(train_data[0])} training pairs, '
            f'{local_batch} of each global batch of {batch_size}')
    datasets = [SNLIBERTDataset(d, max_len, vocab) if d else None
                for d in (train_data, test_data, valid_data)]
    train_iter = make_iter(datasets[0], local_batch, True, fast, seed)
    test_iter, valid_iter = (make_iter(d, batch_size, False, fast, sort=True) if d and rank == 0 else None
                             for d in datasets[1:])
    net = BERTClassifier(bert)
    net.output.initialize(ctx=devices)
    half = dtype == 'float16'
    if half:
        net.cast('float16')
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(net, lr, num_trainable_blocks, kv, lazy_embedding, half)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    ckpt = TrainingCheckpoint(os.path.join(out, 'checkpoint') if out else None, dict(
        train_file=train_file, test_file=test_file, data=data, pretrained=pretrained_model,
        preset=preset, max_len=max_len, batch_size=batch_size, max_examples=max_examples,
        test_fraction=test_fraction, valid_fraction=valid_fraction, seed=seed, fast=fast,
        num_trainable_blocks=num_trainable_blocks, num_workers=kv.num_workers if watchdog else 1,
        dtype=dtype))
    resume_at, history = (0, 0), None
    if resume and ckpt.exists():
        resume_at, history = ckpt.load(net, trainer, devices, num_epochs, lr, log)
    if watchdog:
        distributed.agree(kv, batches=len(train_iter), epoch=resume_at[0], batch=resume_at[1])
    step_done = _step_hook(ckpt, checkpoint_every, net, trainer, len(train_iter), seed, rank,
                           watchdog, resume_at)
    history = train(net, train_iter, test_iter, precision.float32_loss(loss) if half else loss,
                    trainer, num_epochs, devices, valid_iter=valid_iter, animator=animator,
                    log=log, keep_best=watchdog is None, resume_at=resume_at, history=history,
                    step_done=step_done, loss_scale=precision.LOSS_SCALE if half else 1.0)
    if half:
        net.cast('float32')
    if watchdog:
        log(f'worker {rank} of {kv.num_workers}: parameters {distributed.fingerprint(net)}, '
            f'{kv.num_workers * history["examples_per_sec"][-1]:.1f} examples/sec in all')
        distributed.finish()
    if out and rank == 0:
        meta = dict(config, seq_len=max_len, num_classes=3, pretrained=pretrained_model,
                    train_file=train_file, test_file=test_file, seed=seed)
        save_classifier(net, vocab, os.path.join(out, 'classifier'), meta)
        write_json(os.path.join(out, 'history.json'), history)
        plot_history(history, os.path.join(out, 'training_curve.png'))
        log(f'saved the classifier, history.json and training_curve.png in {out}')
    return net, vocab, history


class TrainingCheckpoint:
    """A resumable fine-tuning state in the folder ``path``, written atomically.

    Holds ``model.params``, ``trainer.states`` (Adam's moments) and ``state.json``: the ``run``
    settings it must be resumed with, the position ``(epoch, batch)`` and the history so far.
    """

    def __init__(self, path, run):
        self.path, self.run = path, run

    def exists(self):
        return self.path is not None and os.path.isfile(os.path.join(self.path, 'state.json'))

    def save(self, net, trainer, epoch, batch, history):
        with pretrained.atomic_path(self.path) as tmp:
            os.makedirs(tmp)
            net.save_parameters(os.path.join(tmp, 'model.params'))
            trainer.save_states(os.path.join(tmp, 'trainer.states'))
            with open(os.path.join(tmp, 'state.json'), 'w', encoding='utf-8') as f:
                json.dump(dict(run=self.run, epoch=epoch, batch=batch, history=history), f)

    def load(self, net, trainer, devices, num_epochs, lr, log=print):
        """Load into ``net`` and ``trainer`` (learning rate ``lr``) to train up to ``num_epochs``;
        returns ``((epoch, batch), history)``."""
        with open(os.path.join(self.path, 'state.json'), encoding='utf-8') as f:
            state = json.load(f)
        diff = [f'{k}={v!r} (now {self.run.get(k)!r})' for k, v in state['run'].items()
                if self.run.get(k) != v]
        if diff:
            raise pretrained.PretrainedError(
                f'{self.path}: cannot resume, the checkpoint was written with {"; ".join(diff)}. '
                'Use the same settings, or another output folder to start over')
        if state['epoch'] >= num_epochs:
            raise ValueError(f'{self.path}: all {state["epoch"]} epochs are done; ask for more '
                             'epochs to train on')
        net.load_parameters(os.path.join(self.path, 'model.params'), ctx=devices)
        trainer.load_states(os.path.join(self.path, 'trainer.states'))
        trainer.set_learning_rate(lr)  # the saved optimizer comes back with its own
        log(f'resumed from {self.path}: {state["epoch"]} epochs and {state["batch"]} batches done')
        return (state['epoch'], state['batch']), state['history']


def _step_hook(ckpt, every, net, trainer, num_batches, seed, rank, watchdog, resume_at):
    """``train``'s ``step_done``: feed the watchdog; every ``every`` steps and after every epoch
    rank 0 saves ``ckpt`` and all reseed dropout, so a resumed run equals an uninterrupted one."""
    if every or watchdog:
        distributed.reseed(seed, rank, resume_at[0] * num_batches + resume_at[1])

    def step_done(epoch, batch, history):
        if watchdog:
            watchdog.beat()
        step = epoch * num_batches + batch
        # the end of an epoch is saved after its evaluation, as (epoch + 1, 0)
        if not every or batch == num_batches or (batch and step % every):
            return
        if rank == 0:
            ckpt.save(net, trainer, epoch, batch, history)
        distributed.reseed(seed, rank, step)
    return step_done


def write_json(path, obj):
    with pretrained.atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1)


def plot_history(history, path):
    """The book's train loss / train acc / test acc curves, per epoch, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    epochs = range(1, len(history['train_loss']) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for key, style in (('train_loss', '-'), ('train_acc', 'm--'), ('test_acc', 'g-.'),
                       ('valid_acc', 'r:')):
        if history.get(key):
            ax.plot(epochs, history[key], style, label=key.replace('_', ' '))
    ax.set_xlabel('epoch')
    save_figure(fig, path)


def save_figure(fig, path):
    """Grid, legend and layout on ``fig``'s axes, then write it as a PNG atomically and close it."""
    from matplotlib import pyplot as plt
    for ax in fig.axes:
        ax.grid(True)
        ax.legend()
    fig.tight_layout()
    with pretrained.atomic_path(path) as tmp:
        fig.savefig(tmp, format='png')
    plt.close(fig)


def save_classifier(net, vocab, path, config):
    """Write a fine-tuned classifier atomically: ``classifier.params``, ``vocab.json``, ``config.json``."""
    with pretrained.atomic_path(path) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, 'vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(vocab.idx_to_token, f)
        with open(os.path.join(tmp, 'config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f, indent=1)
        net.save_parameters(os.path.join(tmp, 'classifier.params'))
    return path


def read_saved_model(path):
    """``(vocab, config)`` of a model folder written by :func:`save_classifier`, checked."""
    for name in ('vocab.json', 'config.json', 'classifier.params'):
        if not os.path.isfile(os.path.join(path, name)):
            raise pretrained.PretrainedError(f'{path}: not a saved model (no {name})')
    with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
        config = json.load(f)
    with open(os.path.join(path, 'vocab.json'), encoding='utf-8') as f:
        vocab = pretrained.vocab_from_tokens(json.load(f))
    if len(vocab) != config['vocab_size']:
        raise pretrained.PretrainedError(f'{path}: vocab.json has {len(vocab)} tokens, '
                                         f'config.json says {config["vocab_size"]}')
    return vocab, config


def load_params_into(net, path, devices):
    """Load ``path``/classifier.params into ``net`` on ``devices`` and hybridize it."""
    pretrained.load_param_dict(net, pretrained.read_params(os.path.join(path, 'classifier.params')),
                               path, devices)
    net.hybridize(static_alloc=True)
    return net


def load_classifier(path, devices=None):
    """``(net, vocab, config)`` of a classifier written by :func:`save_classifier`."""
    devices = devices or default_devices()
    vocab, config = read_saved_model(path)
    net = BERTClassifier(pretrained.build_bert(config, dropout=0.0), config['num_classes'])
    load_params_into(net, path, devices)
    return net, vocab, config


def evaluate_file(path, data_file, batch_size=512, devices=None):
    """Accuracy of a saved classifier on an SNLI file."""
    devices = devices or default_devices()
    net, vocab, config = load_classifier(path, devices)
    dataset = SNLIBERTDataset(read_snli(data_file), config['seq_len'], vocab)
    return evaluate_accuracy(net, make_iter(dataset, batch_size, False, True, sort=True), devices)
