"""Knowledge distillation: a fine-tuned model (the teacher) teaches a smaller student its task.

:func:`distill` runs a :class:`~gluon_bertft.config.DistillConfig` (what the CLI's ``distill``
fills) on fine-tuning's stages (:mod:`gluon_bertft.finetune`: the data splits, batches, head,
trainer, loop, checkpoints and resume, devices, the test report and the saved folder), with
distillation's forward and loss (:mod:`gluon_bertft.training.distill`). The student is

* ``student_blocks`` K of the teacher's own blocks (``student_init``: ``alternate``, spread
  evenly from the bottom, every other one of 2K as DistilBERT (Sanh et al., 2019) takes them;
  ``first``, the bottom K), with the teacher's embeddings, pooler and task layer; or
* a ``pretrained`` model or a ``preset`` shape with the teacher's tokenizer (its task layer
  new): tokens must mean the same to both.

The teacher's outputs (logits only) for the labelled and ``unlabelled`` rows are computed
once by its fast inference copy on length-sorted batches and cached beside the run
(``OUT/teacher_outputs.npz``), for every epoch, a resumed run and other students. The result
is an ordinary model folder.
"""
import os

import mxnet as mx
import numpy as onp

from .finetune import (Run, batch_splits, build_net, check_bert, check_vocabulary, encode_splits,
                       fit_labels, read_splits)
from .stages import fit, report, save_run
from .common import storage
from .common.errors import ConfigError, PretrainedError
from .common.metrics import format_metrics
from .config import TEACHER_OUTPUTS, check_environment
from .data.batching import make_iter
from .inference import predict
from .inference.fast import inference_net
from .models import pretrained
from .models.build import ALL_PRESETS, bert_config, build_bert
from .tasks.base import is_wordpiece
from .training import distill as kd
from .training.devices import parse_devices, set_seed
from .training.evaluate import predict_outputs

GRAPH_FILES = ('-symbol.json',)  # an exported graph (INT8 or not): no gradients, no blocks


def distill(config, log=print):
    """Distill ``config.teacher`` into a student; returns ``(net, vocab, result)``.

    ``result``: fine-tuning's (the history, the student's ``test`` metrics, the ``baseline``)
    plus ``teacher`` (the teacher's metrics on the same test set). With ``config.out`` the
    folder is written as :func:`~gluon_bertft.finetune.finetune` writes it, with the
    teacher's cached outputs kept. Raises ``ConfigError``, ``DataError`` or
    ``PretrainedError`` naming the option, file or field.
    """
    run = Run(config, log)
    prepare(run)
    encode_splits(run)
    add_teacher_outputs(run)
    batch_splits(run)
    build_net(run)
    if config.student_blocks:
        copy_params(run.teacher.output, run.net.output)
    run.forward = kd.distill_forward(
        run.net, kd.DistillLoss(run.task.loss, run.task.soft_loss, config.alpha,
                                config.temperature), run.devices, run.num_hard)
    history = fit(run)
    result = report(run, history)
    result['teacher'] = run.task.score(
        predict_outputs(inference_net(run.teacher), teacher_batches(run, run.test_set),
                           run.devices, progress=False), run.test_rows, run.test_set)
    log(f'teacher on the test set: {format_metrics(result["teacher"])}')
    if config.out:
        save_run(run, result)
    return run.net, run.vocab, result


def load_teacher(config, devices):
    """``(net, vocab, task)`` of the teacher folder (a package's or a Hugging Face task
    folder), refused (``PretrainedError``) when it is an exported graph or an INT8 model, and
    (``ConfigError``) when ``config.task`` is another task than the teacher's; fills
    ``config.task`` and ``max_len`` from it."""
    path = config.teacher
    if os.path.isdir(path) and any(n.endswith(GRAPH_FILES) for n in os.listdir(path)):
        raise PretrainedError(f'--teacher {path}: an exported graph (INT8 or not) has no blocks '
                              'to copy or gradients to follow; give the fp32 model folder it '
                              'was made from')
    saved = os.path.join(path, 'config.json')
    saved = storage.read_json(saved) if os.path.isfile(saved) else {}
    if isinstance(saved, dict) and any('int8' in str(saved.get(k, '')).lower()
                                       for k in ('format', 'precision', 'dtype', 'quantization')):
        raise PretrainedError(f'--teacher {path}: an INT8 model; give the fp32 model folder it '
                              'was quantized from')
    net, vocab, task = predict.load_model(path, devices)
    if config.task is not None and config.task != task.name:
        raise ConfigError(f'--task {config.task}: the teacher {path} is a {task.name} model '
                          '(leave --task out to take it from the teacher)')
    config.task, config.max_len = task.name, task.max_len
    if config.encoding is not None:  # the data's, not the teacher's (--encoding)
        task.config['reader']['encoding'] = config.encoding
    return net, vocab, task


def prepare(run):
    """Load the teacher, check the config, read the splits, make the student's BERT."""
    config, log = run.config, run.log
    config.check_student()
    check_environment(config)
    run.devices = parse_devices(config.devices)
    run.teacher, run.vocab, run.task = load_teacher(config, run.devices)
    config.check()
    set_seed(config.seed)
    run.kv = config.kvstore or 'device'
    run.files, run.train_rows, run.test_rows, run.valid_rows = read_splits(run.task, config)
    run.unknown = check_vocabulary(run, teacher_vocabulary(config))
    run.weights = fit_labels(run.task, run.train_rows, config, log)
    run.bert, run.bert_cfg = student_bert(run)
    check_bert(config, run.bert_cfg, run.vocab)
    run.local_batch, run.keep = config.batch_size, ('checkpoint', TEACHER_OUTPUTS)
    teacher_blks = len(run.teacher.encoder.blks)
    log(f'teacher: {config.teacher}, {teacher_blks} blocks; student: {run.bert_cfg["num_blks"]} '
        f'blocks, {run.bert_cfg["num_hiddens"]} hidden; {run.task.name}: {len(run.train_rows)} '
        f'labelled training, {len(run.test_rows)} test examples; devices {run.devices}')


def teacher_vocabulary(config):
    """How a coverage warning names the vocabulary of a distillation (the teacher's, which the
    student shares)."""
    return f"the teacher's vocabulary ({config.teacher})"


def block_choice(num_teacher, k, init):
    """The teacher's blocks a K-block student takes, bottom first: ``first`` 0..K-1;
    ``alternate`` ``floor(i * L / K)`` (L the teacher's blocks: 0, 2, 4 of 6 for K = 3)."""
    return list(range(k)) if init == 'first' else [i * num_teacher // k for i in range(k)]


def student_bert(run):
    """``(bert, config)`` of the student (module docstring), on the run's devices."""
    config, teacher = run.config, run.teacher
    num = len(teacher.encoder.blks)
    if config.student_blocks is not None:
        if not 1 <= config.student_blocks < num:
            raise ConfigError(f'--student-blocks {config.student_blocks}: give 1 to {num - 1} '
                              f'(the teacher has {num} blocks)')
        # the teacher's architecture as its encoder was built (the saved config's, dropout apart)
        arch = {k: v for k, v in teacher.encoder.hparams.items() if k != 'dropout'}
        bert = build_bert(dict(arch, num_blks=config.student_blocks), config.dropout)
        bert.initialize(ctx=run.devices)
        chosen = block_choice(num, config.student_blocks, config.student_init)
        rename = {f'blks.{i}.': f'blks.{j}.' for i, j in enumerate(chosen)}
        copy_params(teacher.encoder, bert.encoder, rename)
        if hasattr(teacher, 'hidden'):  # the pooler of a head on <cls>
            copy_params(teacher.hidden, bert.hidden)
        run.log(f"student: the teacher's blocks {chosen} ({config.student_init})")
        return bert, bert_config(bert)
    if config.pretrained in (None, 'random') and config.preset in ALL_PRESETS:
        bert = build_bert(dict(ALL_PRESETS[config.preset], vocab_size=len(run.vocab)),
                          config.dropout)
        bert.initialize(mx.init.Xavier(), ctx=run.devices)
        return bert, bert_config(bert)
    source = config.pretrained or 'random'
    bert, vocab, bert_cfg = pretrained.load_bert(source, config.preset, run.devices, config.dropout)
    check_same_tokenizer(run.vocab, vocab, config)
    return bert, bert_cfg


def tokenizer_identity(vocab):
    """What makes two tokenizers give the same ids: the tokens by id, and WordPiece's flags."""
    flags = ((vocab.lowercase, vocab.strip_accents, vocab.tokenize_chinese_chars)
             if is_wordpiece(vocab) else None)
    return is_wordpiece(vocab), list(vocab.idx_to_token), flags


def check_same_tokenizer(teacher_vocab, student_vocab, config):
    """``ConfigError`` unless the student's tokenizer is the teacher's (tokens cannot be
    aligned otherwise)."""
    if tokenizer_identity(teacher_vocab) != tokenizer_identity(student_vocab):
        option = f'--pretrained {config.pretrained}' if config.pretrained else f'--preset {config.preset}'
        raise ConfigError(f"{option}: its tokenizer is not the teacher's ({config.teacher}); "
                          'a student must share it (the soft targets are per token and class); '
                          'use --student-blocks, or a model with the same vocabulary')


def copy_params(source, target, rename=None):
    """Copy ``source``'s parameters into ``target``'s of the same structural names (``rename``:
    target prefix for each source prefix of the blocks kept); every target parameter must get
    one."""
    have = source._collect_params_with_prefix()
    for name, param in target._collect_params_with_prefix().items():
        from_name = name
        for new, old in (rename or {}).items():
            if name.startswith(new):
                from_name = old + name[len(new):]
        param.set_data(have[from_name].data().copyto(mx.cpu()))


def teacher_batches(run, dataset):
    """Length-sorted batches of ``dataset`` for the teacher's inference copy."""
    return make_iter(dataset, run.config.batch_size, False, sort=True)


def teacher_columns(run, dataset):
    """The teacher's outputs for ``dataset`` by its fast inference copy on length-sorted
    batches, one host array per output of its head (:func:`~.training.distill.stack_outputs`)."""
    outputs = predict_outputs(inference_net(run.teacher), teacher_batches(run, dataset), run.devices)
    return kd.stack_outputs(outputs, dataset.all_token_ids.shape[1], run.task.per_token)


def add_teacher_outputs(run):
    """Read the unlabelled rows, compute (or read back) the teacher's outputs for every
    training row, and make ``run.train_set`` the distillation set (labels
    ``(*hard, labelled, *teacher)``, :mod:`gluon_bertft.training.distill`)."""
    config, task, labelled = run.config, run.task, run.train_set
    parts = [labelled]
    if config.unlabelled:
        rows = task.read(config.unlabelled, labelled=False)
        task.check_coverage(rows, run.vocab, config.unlabelled, teacher_vocabulary(config),
                            config.max_unknown, run.log)
        parts.append(task.encode(rows, run.vocab, log=run.log))
        run.log(f'unlabelled: {len(parts[1])} examples from {config.unlabelled}')
    joined = Joined(parts)
    cache = config.teacher_outputs or (os.path.join(config.out, TEACHER_OUTPUTS)
                                       if config.out else None)
    teacher = kd.teacher_outputs(run.teacher, joined, lambda dataset: teacher_columns(run, dataset),
                                 config.teacher, cache, run.log)
    n = len(labelled)
    hard = labelled.labels
    if len(parts) > 1:
        guessed = task.teacher_labels(parts[1], [t[n:] for t in teacher])
        hard = (tuple(onp.concatenate([a, b.astype(a.dtype)]) for a, b in zip(hard, guessed))
                if isinstance(hard, tuple) else onp.concatenate([hard, guessed.astype(hard.dtype)]))
    flags = onp.r_[onp.ones(n), onp.zeros(len(joined) - n)]
    joined.labels = kd.batch_labels(hard, flags, teacher, task.per_token)
    run.num_hard = len(hard) if isinstance(hard, tuple) else 1
    run.train_set = joined


class Joined:
    """The BERT inputs of several encoded datasets, one after the other; ``labels`` zeros until
    the caller sets them."""

    def __init__(self, parts):
        join = lambda name: onp.concatenate([getattr(p, name) for p in parts])
        self.all_token_ids, self.all_segments = join('all_token_ids'), join('all_segments')
        self.valid_lens = join('valid_lens')
        self.labels = onp.zeros(len(self.valid_lens), dtype=onp.float32)

    def __len__(self):
        return len(self.valid_lens)
