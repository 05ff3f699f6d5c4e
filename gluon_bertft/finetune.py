"""The one orchestrator: read → encode → batch → loop → evaluate → save, for every task.

:func:`finetune` runs a :class:`~gluon_bertft.config.FinetuneConfig` (what the CLI's
``finetune`` fills); :func:`finetune_snli` is the book's §16.7 entry point on top of it.
Every capability (several devices, checkpoints and exact resume, ``launch``/dist_sync, a
validation split with best-epoch keeping, partial fine-tuning, the book's batches, float16
on GPUs) works the same for every task of :mod:`gluon_bertft.tasks`.
"""
import os

import numpy as onp
from d2l import mxnet as d2l

from .common import storage
from .common.errors import ConfigError, DataError
from .common.metrics import format_metrics
from .config import FinetuneConfig
from .data.batching import make_iter
from .data.snli import find_split
from .models import pretrained
from .tasks import make_task
from .tasks.base import is_wordpiece
from .training import distributed, precision
from .training.checkpoint import Checkpoint
from .training.devices import parse_devices, set_seed
from .training.evaluate import predict_outputs
from .training.loop import train
from .training.trainer import make_trainer

d2l.DATA_HUB.setdefault('SNLI', ('https://nlp.stanford.edu/projects/snli/snli_1.0.zip',
                                 '9fcde07509c7e87ec61c640c1b2753d9041758e4'))


def snli_files(data='SNLI'):
    """(train, test) files of SNLI: the hub name ``'SNLI'`` (downloaded) or a folder."""
    if data == 'SNLI' and not os.path.exists(data):
        zip_path = pretrained.download('SNLI')
        folder = os.path.join(os.path.dirname(zip_path), 'snli_1.0')
        if not os.path.isdir(folder):
            d2l.extract(zip_path)
        data = folder
    if not os.path.isdir(data):
        raise DataError(f'--data {data}: not a folder with snli_1.0_train/_test files (give --train/--test)')
    return find_split(data, 'train'), find_split(data, 'test')


def split_rows(rows, fraction, seed):
    """``(rest, held_back)``: the last ``round(n * fraction)`` of ``RandomState(seed).permutation(n)``
    held back (the split the book-format SNLI runs of earlier versions made)."""
    order = onp.random.RandomState(seed).permutation(len(rows))
    cut = len(rows) - int(round(len(rows) * fraction))
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def task_of_config(config):
    """The task object a :class:`FinetuneConfig` describes."""
    return make_task(config.task, config.max_len, config.format, config.text_columns,
                     config.label_column, config.header, config.encoding, config.tokenizer,
                     config.stride, config.max_query_len, config.max_answer_len)


def read_splits(task, config):
    """``(train, test, valid or None)`` rows: the test file, else a held-back share of the
    training file; ``max_examples`` and ``max_test_examples`` cap them after the split."""
    train_file, test_file = config.train, config.test
    if train_file is None:
        train_file, test_file = snli_files(config.data)
    train_rows = task.read(train_file)
    if test_file is None:
        train_rows, test_rows = split_rows(train_rows, config.test_fraction, config.seed)
    else:
        test_rows = task.read(test_file)
    train_rows = train_rows[:config.max_examples]
    test_rows = test_rows[:config.max_test_examples]
    valid_rows = None
    if config.valid_fraction:
        train_rows, valid_rows = split_rows(train_rows, config.valid_fraction, config.seed + 1)
    for name, rows in (('training', train_rows), ('test', test_rows), ('validation', valid_rows)):
        if rows is not None and not rows:
            raise DataError(f'{train_file}: no {name} examples left after the split '
                            f'(--test-fraction, --valid-fraction, --max-examples)')
    return (train_file, test_file), train_rows, test_rows, valid_rows


def finetune(config, animator=None, log=print):
    """Fine-tune BERT with ``config.task``'s head; returns ``(net, vocab, result)``.

    ``result``: the loop's history (per epoch ``train_loss``, ``train_acc``, ``test_acc``,
    ``valid``, ``examples_per_sec``) plus ``test`` (the task's metrics on the test set) and
    ``baseline`` (the trivial predictor's). With ``config.out`` the model goes to
    ``out/model`` (:func:`~gluon_bertft.common.storage.save_model`), ``result.json`` and
    ``training_curve.png`` beside it, and checkpoints to ``out/checkpoint``. Raises
    ``ConfigError``, ``DataError`` or ``PretrainedError`` naming the option, file or field.
    """
    config.check()
    if config.lazy_embedding and distributed.is_distributed(config.kvstore or distributed.default_kvstore()):
        raise ConfigError('--lazy-embedding: not with a distributed kvstore (the summed gradient '
                          "has every worker's rows; docs/speed.md)")
    set_seed(config.seed)
    devices = parse_devices(config.devices)
    precision.check_dtype(config.dtype, devices)
    task = task_of_config(config)
    files, train_rows, test_rows, valid_rows = read_splits(task, config)
    task.fit(train_rows)
    bert, vocab, bert_cfg = pretrained.load_bert(config.pretrained, config.preset, devices,
                                                 config.dropout, task.vocab_text(train_rows))
    if config.max_len > bert_cfg['max_len']:
        raise ConfigError(f'--max-len {config.max_len}: the BERT has {bert_cfg["max_len"]} positions')
    if (config.trainable_blocks or 0) > bert_cfg['num_blks']:
        raise ConfigError(f'--trainable-blocks {config.trainable_blocks}: the BERT has '
                          f'{bert_cfg["num_blks"]} blocks')
    if config.tokenizer is not None and is_wordpiece(vocab):
        raise ConfigError(f'--tokenizer {config.tokenizer}: {config.pretrained} brings its own '
                          'WordPiece tokenizer, which training and prediction use; --tokenizer '
                          "applies to models with the book's word vocabulary")
    source = 'random initialization (no pretraining)' if config.pretrained == 'random' else config.pretrained
    log(f'BERT: {source}, {bert_cfg["num_blks"]} blocks, {bert_cfg["num_hiddens"]} hidden, '
        f'{len(vocab)} tokens; {task.name}: {len(train_rows)} training, {len(test_rows)} test '
        f'examples; devices {devices}')
    kv, watchdog, rank, local_batch = config.kvstore or distributed.default_kvstore(), None, 0, config.batch_size
    if distributed.is_distributed(kv):
        kv, watchdog, (train_rows,), local_batch = distributed.join(kv, (train_rows,), config.batch_size)
        rank = kv.rank
        log(f'worker {rank} of {kv.num_workers} ({kv.type}): {len(train_rows)} training examples, '
            f'{local_batch} of each global batch of {config.batch_size}')
    fast = not config.book_batches
    train_set = task.encode(train_rows, vocab, train=True, log=log)
    test_set = task.encode(test_rows, vocab, log=log) if rank == 0 else None
    valid_set = task.encode(valid_rows, vocab, log=log) if valid_rows and rank == 0 else None
    train_iter = make_iter(train_set, local_batch, True, fast, config.seed)
    test_iter = make_iter(test_set, config.batch_size, False, fast, sort=True) if test_set else None
    net = task.head(bert)
    net.output.initialize(ctx=devices)
    half = config.dtype == 'float16'
    if half:
        net.cast('float16')
    if config.hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    total_steps = config.epochs * len(train_iter)
    schedule = (int(config.warmup * total_steps), total_steps) if config.warmup else None
    trainer = make_trainer(net, config.lr, config.trainable_blocks, kv, config.lazy_embedding,
                           half, config.weight_decay, schedule, config.clip_grad, config.fused_adam)
    # a notebook's animator: no bar, which would replace its last drawing (clear_output)
    outputs = lambda dataset: predict_outputs(net, make_iter(dataset, config.batch_size, False, fast, sort=True),
                                              devices, progress=False if animator else None)

    def validate(_):
        value = task.score(outputs(valid_set), valid_rows, valid_set)[task.metric]
        return task.metric, float('nan') if value is None else value  # undefined: never best
    num_workers = kv.num_workers if watchdog else 1
    ckpt = Checkpoint(os.path.join(config.out, 'checkpoint') if config.out else None,
                      config.run_settings(num_workers=num_workers,
                                          schedule_steps=total_steps if config.warmup else None))
    resume_at, history, kept = (0, 0), None, {}
    if config.resume and ckpt.exists():
        state = ckpt.load(net, trainer, devices, config.lr,
                          counters=dict(epoch=None, batch=len(train_iter) - 1),
                          history=('train_loss', 'train_acc', 'test_acc', 'valid', 'examples_per_sec'))
        if state['epoch'] >= config.epochs:
            raise ConfigError(f'{ckpt.path}: all {state["epoch"]} epochs are done; ask for more '
                              '--epochs to train on')
        resume_at, history = (state['epoch'], state['batch']), state['history']
        best_params = ckpt.load_best(devices[0])
        if best_params is not None and history.get('best_epoch'):  # the epochs before count too
            kept = dict(value=history['valid'][history['best_epoch'] - 1], params=best_params)
        log(f'resumed from {ckpt.path}: {state["epoch"]} epochs and {state["batch"]} batches done')
    if watchdog:
        distributed.agree(kv, batches=len(train_iter), epoch=resume_at[0], batch=resume_at[1])
    step_done = _step_hook(ckpt, config.checkpoint_every, net, trainer, len(train_iter),
                           config.seed, rank, watchdog, resume_at, kept)
    loss = precision.float32_loss(task.loss) if half else task.loss
    history = train(net, train_iter, test_iter, loss, trainer, config.epochs, devices,
                    validate=validate if valid_set is not None else None, animator=animator,
                    log=log, keep_best=watchdog is None,
                    accuracy=task.accuracy, resume_at=resume_at, history=history,
                    step_done=step_done, loss_scale=precision.LOSS_SCALE if half else 1.0,
                    clip_grad=config.clip_grad, kept=kept)
    if half:
        net.cast('float32')
    if watchdog:
        log(f'worker {rank} of {kv.num_workers}: parameters {distributed.fingerprint(net)}, '
            f'{kv.num_workers * history["examples_per_sec"][-1]:.1f} examples/sec in all')
        distributed.finish()
    result = dict(history)
    if rank == 0:
        result.update(test=task.score(outputs(test_set), test_rows, test_set),
                      baseline=task.baseline(train_rows, test_rows, test_set))
        log(f'test: {format_metrics(result["test"])}')
        doc = task.baseline.__doc__.strip().rstrip('.').replace('``', '')
        log(f'baseline ({doc[0].lower() + doc[1:]}): {format_metrics(result["baseline"])}')
    if config.out and rank == 0:
        meta = dict(task.config, bert=bert_cfg, pretrained=config.pretrained, train_file=files[0],
                    test_file=files[1], seed=config.seed, finetune=config.to_dict())
        storage.save_model(net, vocab, os.path.join(config.out, 'model'), meta)
        storage.write_json(os.path.join(config.out, 'result.json'), result)
        storage.plot_history(history, os.path.join(config.out, 'training_curve.png'))
        log(f'saved the model, result.json and training_curve.png in {config.out}')
    return net, vocab, result


def _step_hook(ckpt, every, net, trainer, num_batches, seed, rank, watchdog, resume_at, kept):
    """``train``'s ``step_done``: feed the watchdog; every ``every`` steps and after every epoch
    rank 0 saves ``ckpt`` (with ``kept``'s best-epoch parameters) and all reseed dropout, so a
    resumed run equals an uninterrupted one."""
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
            ckpt.save(net, trainer, best_params=kept.get('params'), epoch=epoch, batch=batch,
                      history=history)
        distributed.reseed(seed, rank, step)
    return step_done


def finetune_snli(train_file=None, test_file=None, data='SNLI', pretrained_model='bert.small',
                  preset=None, num_epochs=5, batch_size=512, max_len=128, lr=1e-4,
                  max_examples=None, test_fraction=0.1, valid_fraction=0.0,
                  num_trainable_blocks=None, devices=None, seed=0, out=None, fast=True,
                  hybridize=True, dropout=0.1, animator=None, log=print, **options):
    """Fine-tune ``BERTClassifier`` on SNLI as §16.7 does; returns ``(net, vocab, result)``.

    The book's run with its defaults (``bert.small``, 5 epochs, batch 512, ``max_len`` 128,
    lr 1e-4): :func:`finetune` with ``task='snli'``. ``devices``: a list of contexts or a
    spec like ``'cpu:0,cpu:1'``; ``fast=False`` pads every batch to ``max_len`` as the book
    does. Other ``options`` are fields of :class:`~gluon_bertft.config.FinetuneConfig`
    (``checkpoint_every``, ``resume``, ``kvstore``, ``dtype``, ``lazy_embedding``, ...).
    """
    if devices is not None and not isinstance(devices, str):
        devices = ','.join(f'{d.device_type}:{d.device_id}' for d in devices)
    config = FinetuneConfig(task='snli', train=train_file, test=test_file, data=data,
                            pretrained=pretrained_model, preset=preset, epochs=num_epochs,
                            batch_size=batch_size, max_len=max_len, lr=lr,
                            max_examples=max_examples, test_fraction=test_fraction,
                            valid_fraction=valid_fraction, trainable_blocks=num_trainable_blocks,
                            devices=devices or 'auto', seed=seed, out=out, book_batches=not fast,
                            hybridize=hybridize, dropout=dropout, **options)
    return finetune(config, animator=animator, log=log)
