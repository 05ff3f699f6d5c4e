"""The task registry (GluonNLP style): every task of §16.6-16.7 by name.

======================  ==========================================================
``snli``                §16.7: the book's SNLI reader, ``BERTClassifier`` (3 classes)
``classify``            one text -> a class (SST-2, SMS spam, rt-polarity)
``pair-classify``       two texts -> a class (a generic table; docs/tasks.md)
``regress``             one or two texts -> a score (STS-B)
``tag``                 a tag per word (CoNLL-2003 NER)
``qa``                  an answer span in a passage (SQuAD v1.1)
======================  ==========================================================

:mod:`.base` documents the protocol each task implements.
"""
from ..data.snli import LABELS
from ..errors import ConfigError
from .classify import ClassifyTask, PairClassifyTask, RegressTask
from .qa import QATask
from .snli import SNLITask
from .tag import TagTask

TASKS = {cls.name: cls for cls in (SNLITask, ClassifyTask, PairClassifyTask, RegressTask,
                                   TagTask, QATask)}


def make_task(name, max_len=128, fmt=None, text_columns=None, label_column=None, header=None,
              encoding='utf-8', tokenizer=None, stride=64, max_query_len=64, max_answer_len=30):
    """A task with its config: reader options, tokenizer and lengths (QA: window ``stride``,
    question and answer length caps, in tokens). Raises ``ConfigError`` for an unknown task."""
    if name not in TASKS:
        raise ConfigError(f'task {name!r}: choose from {", ".join(TASKS)}')
    cls = TASKS[name]
    columns, label = getattr(cls, 'columns', (None, None))
    config = dict(task=name, max_len=max_len, tokenizer=tokenizer or 'whitespace',
                  reader=dict(fmt=fmt, text_columns=list(text_columns or columns or ()),
                              label_column=label_column or label, header=header, encoding=encoding))
    if name == 'qa':
        config.update(tokenizer='basic', stride=stride, max_query_len=max_query_len,
                      max_answer_len=max_answer_len)
    return cls(config)


def task_from_config(config):
    """The task of a saved model's ``config.json`` (older SNLI classifiers name none)."""
    name = config.get('task', 'snli')
    if name not in TASKS:
        raise ConfigError(f'config.json: task {name!r} is none of {", ".join(TASKS)}')
    if 'seq_len' in config:  # written before 0.2: max_len was the BERT's, seq_len the examples'
        config = dict(config, max_len=config['seq_len'])
    if name == 'snli' and 'labels' not in config:  # written before 0.2: the book's three
        config = dict(config, labels=list(LABELS))
    config.setdefault('tokenizer', 'whitespace')
    config.setdefault('reader', dict(encoding='utf-8'))
    return TASKS[name](dict(config, task=name))


__all__ = ['TASKS', 'make_task', 'task_from_config', 'SNLITask', 'ClassifyTask',
           'PairClassifyTask', 'RegressTask', 'TagTask', 'QATask']
