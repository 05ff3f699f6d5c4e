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

from .common.errors import ConfigError, DataError
from .config import FinetuneConfig, check_environment
from .data import coverage
from .data.batching import make_iter
from .data.snli import find_split
from .models import pretrained
from .models.bert import use_fused_attention
from .models.build import check_segments
from .tasks import labels, task_of_config
from .tasks.base import is_wordpiece
from .training import distributed, precision
from .training.devices import parse_devices, set_seed
from .training.trainer import make_trainer
from .stages import fit, report, save_run

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
    valid_rows = task.read(config.valid) if config.valid else None
    if config.valid_fraction:
        train_rows, valid_rows = split_rows(train_rows, config.valid_fraction, config.seed + 1)
    for name, rows in (('training', train_rows), ('test', test_rows), ('validation', valid_rows)):
        if rows is not None and not rows:
            raise DataError(f'{train_file}: no {name} examples left after the split '
                            f'(--test-fraction, --valid-fraction, --max-examples)')
    return (train_file, test_file), train_rows, test_rows, valid_rows


class Run:
    """The parts of one fine-tuning run, filled in order by :func:`finetune`'s stages."""

    def __init__(self, config, log, animator=None):
        self.config, self.log, self.animator = config, log, animator
        self.kv, self.watchdog, self.rank, self.weights = None, None, 0, None
        self.unknown = None
        self.forward = None  # the step's forward; None: fine-tuning's (distillation: its own)
        self.keep = ('checkpoint',)  # what of ``out`` the end of the run carries over


def finetune(config, animator=None, log=print):
    """Fine-tune BERT with ``config.task``'s head; returns ``(net, vocab, result)``.

    ``result``: the loop's history (per epoch ``train_loss``, ``train_acc``, ``test_acc``,
    ``valid``, ``examples_per_sec``) plus ``test`` (the task's metrics on the test set) and
    ``baseline`` (the trivial predictor's). With ``config.out`` checkpoints go to
    ``out/checkpoint`` during the run, and at the end ``out`` is replaced in one step
    (:func:`~gluon_bertft.common.outputs.replace_folder`) by a folder with the model
    (``model/``, :func:`~gluon_bertft.common.storage.save_model`), ``result.json``,
    ``training_curve.png`` and the checkpoint carried over: a previous run's outputs are
    replaced together, never half, and ``out`` may hold nothing else (refused before any
    work). Raises ``ConfigError``, ``DataError`` or ``PretrainedError`` naming the option,
    file or field.
    """
    run = Run(config, log, animator)
    prepare(run)
    build(run)
    history = fit(run)
    result = report(run, history)
    if config.out and run.rank == 0:
        save_run(run, result)
    return run.net, run.vocab, result


def prepare(run):
    """Check the config, read and split the data, load the BERT, join a distributed run."""
    config, log = run.config, run.log
    config.check()
    check_environment(config)
    kv = config.kvstore or distributed.default_kvstore()
    if config.lazy_embedding and distributed.is_distributed(kv):
        raise ConfigError('--lazy-embedding: not with a distributed kvstore (the summed gradient '
                          "has every worker's rows; docs/speed.md)")
    if config.patience and distributed.is_distributed(kv):
        raise ConfigError('--patience: not with a distributed kvstore (the validation split is '
                          'evaluated by rank 0 alone; docs/scaleout.md)')
    set_seed(config.seed)
    run.devices = parse_devices(config.devices)
    precision.check_dtype(config.dtype, run.devices)
    run.task = task = task_of_config(config)
    run.files, run.train_rows, run.test_rows, run.valid_rows = read_splits(task, config)
    task.fit(run.train_rows)
    run.weights = fit_labels(task, run.train_rows, config, log)
    chosen = task.choose_tokenizer(run.train_rows, config.tokenizer)
    run.bert, run.vocab, run.bert_cfg = pretrained.load_bert(
        config.pretrained, config.preset, run.devices, config.dropout, task.vocab_text(run.train_rows))
    check_bert(config, run.bert_cfg, run.vocab)
    if chosen and not is_wordpiece(run.vocab):
        log(chosen)
    run.unknown = check_vocabulary(run)
    source = ('random initialization (no pretraining)' if config.pretrained == 'random'
              else config.pretrained)
    log(f'BERT: {source}, {run.bert_cfg["num_blks"]} blocks, {run.bert_cfg["num_hiddens"]} hidden, '
        f'{len(run.vocab)} tokens; {task.name}: {len(run.train_rows)} training, '
        f'{len(run.test_rows)} test examples; devices {run.devices}')
    run.kv, run.local_batch = kv, config.batch_size
    if distributed.is_distributed(kv):
        run.kv, run.watchdog, (run.train_rows,), run.local_batch = distributed.join(
            kv, (run.train_rows,), config.batch_size)
        run.rank = run.kv.rank
        log(f'worker {run.rank} of {run.kv.num_workers} ({run.kv.type}): {len(run.train_rows)} '
            f'training examples, {run.local_batch} of each global batch of {config.batch_size}')


def check_bert(config, bert_cfg, vocab):
    """Refuse options that do not fit the loaded BERT (``ConfigError`` naming the option)."""
    if config.max_len > bert_cfg['max_len']:
        raise ConfigError(f'--max-len {config.max_len}: the BERT has {bert_cfg["max_len"]} positions')
    if (config.trainable_blocks or 0) > bert_cfg['num_blks']:
        raise ConfigError(f'--trainable-blocks {config.trainable_blocks}: the BERT has '
                          f'{bert_cfg["num_blks"]} blocks')
    if config.tokenizer is not None and is_wordpiece(vocab):
        raise ConfigError(f'--tokenizer {config.tokenizer}: {config.pretrained} brings its own '
                          'WordPiece tokenizer, which training and prediction use; --tokenizer '
                          "applies to models with the book's word vocabulary")


def check_vocabulary(run, model=None):
    """``{'train': share, 'test': share}``: the characters of the first rows of the training and
    test sets that the vocabulary maps to unknown tokens (:meth:`Task.check_coverage`: a
    warning above 30 %, an error above ``--max-unknown``), before any training. ``model``:
    how the warning names the vocabulary (default: ``--pretrained``'s)."""
    config, (train_file, test_file) = run.config, run.files
    model = model or (coverage.BUILT if config.pretrained == 'random' and not is_wordpiece(run.vocab)
                      else f"--pretrained {config.pretrained}'s vocabulary")
    check = lambda rows, where: run.task.check_coverage(rows, run.vocab, where, model,
                                                        config.max_unknown, run.log)
    return dict(train=check(run.train_rows, train_file),
                test=check(run.test_rows, test_file or f'the test rows held back from {train_file}'))


def build(run):
    """Encode and batch the data (:func:`encode_splits`, :func:`batch_splits`), then put the
    task's head on the BERT and make the trainer (:func:`build_net`)."""
    encode_splits(run)
    batch_splits(run)
    build_net(run)


def encode_splits(run):
    """Encode the splits (the test and validation sets on rank 0 only)."""
    task, log = run.task, run.log
    run.train_set = task.encode(run.train_rows, run.vocab, train=True, log=log)
    run.test_set = task.encode(run.test_rows, run.vocab, log=log) if run.rank == 0 else None
    run.valid_set = (task.encode(run.valid_rows, run.vocab, log=log)
                     if run.valid_rows and run.rank == 0 else None)


def batch_splits(run):
    """The training batches (shuffled, bucketed) and the test batches (length-sorted)."""
    config, book = run.config, run.config.book_batches
    run.train_iter = make_iter(run.train_set, run.local_batch, True, book_batches=book,
                               seed=config.seed)
    run.test_iter = (make_iter(run.test_set, config.batch_size, False, book_batches=book, sort=True)
                     if run.test_set else None)


def build_net(run):
    """The task's head on the BERT (its output layer initialized), hybridized; the trainer,
    its schedule over ``epochs * len(train_iter)`` steps."""
    config, task = run.config, run.task
    run.net = net = task.head(run.bert)
    if config.fused_attention:  # opt-in: numbers within float rounding of the default's
        use_fused_attention(net.encoder)
    for dataset in (run.train_set, run.test_set, run.valid_set):
        check_segments(dataset, net, f'--pretrained {config.pretrained}')
    net.output.initialize(ctx=run.devices)
    if config.dtype == 'float16':
        net.cast('float16')
    if config.hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    run.total_steps = config.epochs * len(run.train_iter)
    schedule = (int(config.warmup * run.total_steps), run.total_steps) if config.warmup else None
    run.trainer = make_trainer(net, config.lr, config.trainable_blocks, run.kv,
                               lazy_embedding=config.lazy_embedding,
                               multi_precision=config.dtype == 'float16',
                               weight_decay=config.weight_decay, schedule=schedule,
                               clip_grad=config.clip_grad, fused=config.fused_adam)


def fit_labels(task, train_rows, config, log=print):
    """After ``task.fit``: the display names of ``--label-names`` into ``task.config`` and the
    class weights of ``--class-weights`` (over all training rows, before any sharding) into
    ``task.loss``, logged once; returns the weights per class id, or None."""
    labels.apply_label_names(task, config.label_names)
    weights = labels.class_weights(task, train_rows, config.class_weights)
    if weights:
        task.weigh(weights)
        log(f'class weights: {labels.describe(task, weights)}')
    return weights


def finetune_snli(train_file=None, test_file=None, data='SNLI', pretrained_model='bert.small',
                  preset=None, num_epochs=5, batch_size=512, max_len=128, lr=1e-4,
                  max_examples=None, test_fraction=0.1, valid_fraction=0.0,
                  num_trainable_blocks=None, devices=None, seed=0, out=None,
                  hybridize=True, dropout=0.1, animator=None, log=print, **options):
    """Fine-tune ``BERTClassifier`` on SNLI as §16.7 does; returns ``(net, vocab, result)``.

    The book's run with its defaults (``bert.small``, 5 epochs, batch 512, ``max_len`` 128,
    lr 1e-4): :func:`finetune` with ``task='snli'``. ``devices``: a list of contexts or a
    spec like ``'cpu:0,cpu:1'``; ``book_batches=True`` pads every batch to ``max_len`` as the
    book does. Other ``options`` are fields of :class:`~gluon_bertft.config.FinetuneConfig`
    (``checkpoint_every``, ``resume``, ``kvstore``, ``dtype``, ``lazy_embedding``, ...).
    """
    if devices is not None and not isinstance(devices, str):
        devices = ','.join(f'{d.device_type}:{d.device_id}' for d in devices)
    config = FinetuneConfig(task='snli', train=train_file, test=test_file, data=data,
                            pretrained=pretrained_model, preset=preset, epochs=num_epochs,
                            batch_size=batch_size, max_len=max_len, lr=lr,
                            max_examples=max_examples, test_fraction=test_fraction,
                            valid_fraction=valid_fraction, trainable_blocks=num_trainable_blocks,
                            devices=devices or 'auto', seed=seed, out=out,
                            hybridize=hybridize, dropout=dropout, **options)
    return finetune(config, animator=animator, log=log)
