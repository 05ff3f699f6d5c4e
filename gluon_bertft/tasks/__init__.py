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
from ..common.errors import ConfigError, PretrainedError, shorten
from ..common.files import check_encoding
from ..data import tsv
from ..data.snli import LABELS
from ..data.tokenize import TOKENIZERS
from .classify import ClassifyTask, PairClassifyTask, RegressTask
from .labels import check_label_names
from .qa import QATask
from .snli import SNLITask
from .tag import TagTask

READER_KEYS = ('fmt', 'text_columns', 'label_column', 'header', 'encoding', 'tag_column',
               'tag_scheme')
SAVED_TAG_SCHEMES = ('iob', 'plain')  # 'auto' is decided before a model is saved
TASKS = {cls.name: cls for cls in (SNLITask, ClassifyTask, PairClassifyTask, RegressTask,
                                   TagTask, QATask)}


def make_task(name, max_len=128, fmt=None, text_columns=None, label_column=None, header=None,
              encoding='utf-8', tokenizer=None, stride=64, max_query_len=64, max_answer_len=30,
              tag_column=None, tag_scheme='auto'):
    """A task with its config: reader options, tokenizer and lengths (QA: window ``stride``,
    question and answer length caps, in tokens; tag: the tag column, 0-based, None for the
    last, and the scheme ``auto``, ``iob`` or ``plain``). Raises ``ConfigError`` for an
    unknown task."""
    if name not in TASKS:
        raise ConfigError(f'task {name!r}: choose from {", ".join(TASKS)}')
    cls = TASKS[name]
    columns, label = getattr(cls, 'columns', (None, None))
    config = dict(task=name, max_len=max_len, tokenizer=tokenizer or 'whitespace',
                  reader=dict(fmt=fmt, text_columns=list(text_columns or columns or ()),
                              label_column=label_column or label, header=header, encoding=encoding))
    if name == 'tag':
        if tag_scheme not in ('auto',) + SAVED_TAG_SCHEMES:
            raise ConfigError(f'tag scheme {tag_scheme!r}: choose from auto, iob, plain')
        config['reader'].update(tag_column=tag_column, tag_scheme=tag_scheme)
    if name == 'qa':
        config.update(tokenizer='basic', stride=stride, max_query_len=max_query_len,
                      max_answer_len=max_answer_len)
    return cls(config)


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
    names = lambda v, n: (isinstance(v, list) and all(isinstance(x, str) for x in v)
                          and len(set(v)) == len(v) and (len(v) == n if n else len(v) >= 2))
    check('task', lambda v: isinstance(v, str) and v in TASKS, f'one of {", ".join(TASKS)}')
    smallest = TASKS[config['task']].min_len
    check('max_len', lambda v: count(v) and v >= smallest, f'an integer >= {smallest} (tokens per example)')
    check('tokenizer', lambda v: isinstance(v, str) and v in TOKENIZERS,
          f'one of {", ".join(TOKENIZERS)}')
    if config['task'] in ('snli', 'classify', 'pair-classify', 'tag'):
        size = 3 if config['task'] == 'snli' else None
        check('labels', lambda v: names(v, size), f'a list of {size or "two or more"} distinct names')
        shown = config.get('label_names')
        if shown is not None:  # written with --label-names
            strings = lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
            check('label_names', strings, 'an object of stored label -> display name (strings)')
            check_label_names(shown, config['labels'], f'{where}: "label_names"', PretrainedError)
    elif 'label_names' in config:
        raise PretrainedError(f'{where}: "label_names" applies to the tasks with classes, not to '
                              f'--task {config["task"]}')
    if config['task'] == 'qa':
        for key in ('stride', 'max_query_len', 'max_answer_len'):
            check(key, count, 'a positive integer')
    check('reader', lambda v: isinstance(v, dict) and set(v) <= set(READER_KEYS),
          f'an object with some of {", ".join(READER_KEYS)}')
    reader = dict(fmt=lambda v: v is None or v in tsv.FORMATS, header=lambda v: v in (None, True, False),
                  text_columns=lambda v: isinstance(v, list) and len(v) <= 2 and all(map(column, v)),
                  label_column=lambda v: v is None or column(v),
                  encoding=lambda v: isinstance(v, str) and _text_encoding(v),
                  tag_column=lambda v: v is None or (count(v) and config['task'] == 'tag'),
                  tag_scheme=lambda v: v in SAVED_TAG_SCHEMES and config['task'] == 'tag')
    for key, ok in reader.items():
        if key in config['reader']:
            check(key, ok, 'a valid value', config['reader'], 'reader ')


def _text_encoding(name):
    try:
        return bool(check_encoding(name))
    except ConfigError:
        return False


__all__ = ['TASKS', 'make_task', 'task_from_config', 'SNLITask', 'ClassifyTask',
           'PairClassifyTask', 'RegressTask', 'TagTask', 'QATask']
