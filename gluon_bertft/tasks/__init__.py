"""The task registry (GluonNLP style): every task of §16.6-16.7 by name.

======================  ==========================================================
``snli``                §16.7: the book's SNLI reader, ``BERTClassifier`` (3 classes)
``classify``            one text -> a class (SST-2, SMS spam, rt-polarity)
``pair-classify``       two texts -> a class (a generic table; docs/tasks.md)
``regress``             one or two texts -> a score (STS-B)
``tag``                 a tag per word (CoNLL-2003 NER, chunks, POS)
``qa``                  an answer span in a passage (SQuAD v1.1)
======================  ==========================================================

:mod:`.base` documents the protocol each task implements.
"""
import dataclasses

from ..common.errors import ConfigError, PretrainedError, shorten
from ..common.files import check_encoding
from ..data import tsv
from ..data.snli import LABELS
from ..data.tokenize import TOKENIZERS
from .base import COMMON_OPTIONS, GROUPS, HINTS, RAW_HELP
from .classify import ClassifyTask, PairClassifyTask, RegressTask
from .qa import QATask
from .snli import SNLITask
from .tag import SAVED_TAG_SCHEMES, TagTask

TASKS = {cls.name: cls for cls in (SNLITask, ClassifyTask, PairClassifyTask, RegressTask,
                                   TagTask, QATask)}
# the options some tasks take and others do not, with their defaults
TASK_OPTIONS = {k: v for cls in TASKS.values() for k, v in cls.OPTIONS.items()}
RAW_INPUTS = tuple(dict.fromkeys(name for cls in TASKS.values() for name in cls.RAW_INPUTS))


def task_class(name):
    """The task class registered as ``name``; ``ConfigError`` for an unknown one."""
    if name not in TASKS:
        raise ConfigError(f'task {name!r}: choose from {", ".join(TASKS)}')
    return TASKS[name]


def make_task(name, max_len=128, **options):
    """A task with its config from keyword options: ``tokenizer``, ``encoding`` and the task's
    own (its class's ``OPTIONS``: reader columns for the table tasks; ``tag_column`` and
    ``tag_scheme`` for tag; ``stride``, ``max_query_len``, ``max_answer_len`` for qa).
    Raises ``ConfigError`` for an unknown task or an option it does not take."""
    cls = task_class(name)
    for option, value in options.items():
        if option not in COMMON_OPTIONS and option not in cls.OPTIONS:
            if option not in TASK_OPTIONS:
                raise ConfigError(f'{option}: not an option of any task')
            raise ConfigError(not_taken(option, name))
    return cls.from_options({**COMMON_OPTIONS, **cls.OPTIONS, 'max_len': max_len, **options})


def task_of_config(config):
    """The task a ``FinetuneConfig`` describes (the fields its class takes)."""
    cls = task_class(config.task)
    return cls.from_options({k: getattr(config, k) for k in (*COMMON_OPTIONS, *cls.OPTIONS)})


def not_taken(option, task):
    """The error for ``option`` given to ``task``, naming the tasks that take it."""
    takers = [n for n, cls in TASKS.items() if option in cls.OPTIONS]
    flag = f'--{option.replace("_", "-")}'
    if option in HINTS:
        return f'{flag}: {HINTS[option]}'
    if len(takers) == 1:
        return f'{flag}: applies to --task {takers[0]} only'
    group = next((g for options, g in GROUPS.items() if option in options), 'the tasks')
    return f'{flag}: applies to {group} ({", ".join(takers)}), not --task {task}'


def check_options(config):
    """Refuse, naming the option, what ``config.task`` does not take (an option of another task
    set to other than its default) and what its class's :meth:`check_options` refuses."""
    cls = task_class(config.task)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for option in TASK_OPTIONS:
        if option not in cls.OPTIONS and getattr(config, option) != defaults[option]:
            raise ConfigError(not_taken(option, config.task))
    cls.check_options(config)


def raw_input_help(name):
    """The ``--help`` of a raw input of ``predict`` and ``explain``: which tasks take it."""
    takers = ', '.join(n for n, cls in TASKS.items() if name in cls.RAW_INPUTS)
    return f'{RAW_HELP[name]} ({takers})'


def task_from_config(config, where='config.json'):
    """The task of a saved model's ``config.json`` (older SNLI classifiers name none), every
    field it uses checked: ``PretrainedError`` naming ``where`` and the field."""
    name = config.get('task', 'snli')
    if 'seq_len' in config:  # written before 0.2: max_len was the BERT's, seq_len the examples'
        config = dict(config, max_len=config['seq_len'])
    if name == 'snli' and 'labels' not in config:  # written before 0.2: the book's three
        config = dict(config, labels=list(LABELS))
    config = dict(config, task=name)
    config.setdefault('tokenizer', 'whitespace')
    config.setdefault('reader', dict(encoding='utf-8'))
    _check_saved(config, where)
    return TASKS[name](config)


def _check_saved(config, where):
    def check(key, ok, expected, source=config, prefix=''):
        if not ok(source.get(key)):
            raise PretrainedError(f'{where}: {prefix}{key!r} is {shorten(source.get(key))}; '
                                  f'expected {expected}')

    count = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
    column = lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
    check('task', lambda v: isinstance(v, str) and v in TASKS, f'one of {", ".join(TASKS)}')
    cls = TASKS[config['task']]
    check('max_len', lambda v: count(v) and v >= cls.min_len,
          f'an integer >= {cls.min_len} (tokens per example)')
    check('tokenizer', lambda v: isinstance(v, str) and v in TOKENIZERS,
          f'one of {", ".join(TOKENIZERS)}')
    if 'label_names' in config and 'label_names' not in cls.OPTIONS:
        raise PretrainedError(f'{where}: "label_names" applies to the tasks with classes, not to '
                              f'--task {config["task"]}')
    cls.check_saved(config, check, where)
    check('reader', lambda v: isinstance(v, dict) and set(v) <= set(cls.READER_KEYS),
          f'an object with some of {", ".join(cls.READER_KEYS)}')
    reader = dict(fmt=lambda v: v is None or v in tsv.FORMATS, header=lambda v: v in (None, True, False),
                  text_columns=lambda v: isinstance(v, list) and len(v) <= 2 and all(map(column, v)),
                  label_column=lambda v: v is None or column(v),
                  encoding=lambda v: isinstance(v, str) and _text_encoding(v),
                  tag_column=lambda v: v is None or count(v),
                  tag_scheme=lambda v: v in SAVED_TAG_SCHEMES)
    for key, ok in reader.items():
        if key in config['reader']:
            check(key, ok, 'a valid value', config['reader'], 'reader ')


def _text_encoding(name):
    try:
        return bool(check_encoding(name))
    except ConfigError:
        return False


__all__ = ['TASKS', 'make_task', 'task_from_config', 'task_of_config', 'check_options',
           'SNLITask', 'ClassifyTask', 'PairClassifyTask', 'RegressTask', 'TagTask', 'QATask']
