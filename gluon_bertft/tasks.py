"""Fine-tuning, evaluation and prediction for the task layers of §16.6, through the one loop.

A task object knows how to read its files, encode them, which head to put on BERT, its loss,
the share of correct predictions the loop reports per epoch, the field's metric with its
trivial baseline, and how to show a prediction for raw input. Its ``config`` (labels, reader
options, lengths) is saved with the model, so ``evaluate_file`` and ``predict`` need only the
model folder. SNLI keeps its own path (:mod:`finetune`).
"""
import json
import os

import numpy as onp
from mxnet import gluon, np, npx

from . import finetune, metrics, pretrained
from .data import conll, qa, squad, tsv
from .data.snli import DataError
from .data.tagging import TaggingDataset
from .data.text import TextDataset, label_ids, scores
from .data.tokenize import basic, get_tokenizer
from .heads import BERTClassifier, BERTRegressor, BERTSpanQA, BERTTagger
from .train import batch_len, default_devices, make_trainer, num_correct, train

_ce = gluon.loss.SoftmaxCrossEntropyLoss()


def split_batch(features, labels, devices):
    """``d2l.split_batch_multi_inputs`` for labels that are one array or a tuple of arrays;
    a batch smaller than the number of devices uses the first devices only."""
    devices = devices[:batch_len(labels)]
    split = lambda a: gluon.utils.split_and_load(a, devices, even_split=False)
    X = list(zip(*[split(f) for f in features]))
    y = list(zip(*[split(l) for l in labels])) if isinstance(labels, tuple) else split(labels)
    return X, y


def forward_all(net, dataset, batch_size, devices):
    """Host outputs of ``net`` for every example of ``dataset``, in order: one array (or tuple
    of arrays) per example, over the positions of its batch."""
    results = []
    for features, labels in finetune.make_iter(dataset, batch_size, False, True):  # in order
        for X in split_batch(features, labels, devices)[0]:
            y_hat = net(X)
            if isinstance(y_hat, (tuple, list)):
                results.extend(zip(*[o.asnumpy() for o in y_hat]))
            else:
                results.extend(y_hat.asnumpy())
    return results


class Task:
    """A task's parts for the loop; ``config`` (labels, reader options, lengths) is saved with
    the model."""

    def __init__(self, config):
        self.config = config


class ClassifyTask(Task):
    """Single-text (``classify``) or text-pair (``pair-classify``) classification over ``<cls>``."""

    num_texts = (1,)
    loss = _ce
    accuracy = staticmethod(num_correct)

    def read(self, path):
        rows = tsv.read_labelled(path, **self.config['reader'])
        if not rows:
            raise DataError(f'{path}: no examples')
        if len(rows[0].texts) not in self.num_texts:
            raise ValueError(f'{path}: {self.config["task"]} reads {" or ".join(map(str, self.num_texts))}'
                             f' text column(s), got {len(rows[0].texts)}')
        return rows

    def fit(self, rows):
        """Take the label names from the training rows (sorted: ids are reproducible)."""
        self.config['labels'] = sorted({row.label for row in rows})
        if len(self.config['labels']) < 2:
            raise DataError(f'{rows[0].where}: the training data has one label only')

    def vocab_text(self, rows):
        tokenize = get_tokenizer(self.config['tokenizer'])
        return [' '.join(tokenize(t)) for row in rows for t in row.texts]

    def targets(self, rows):
        return label_ids(rows, self.config['labels'])

    def encode(self, rows, vocab, train=False, log=print):
        labels = onp.zeros(len(rows), onp.float32) if rows[0].label is None else self.targets(rows)
        return TextDataset(rows, vocab, self.config['seq_len'], self.config['tokenizer'], labels)

    def head(self, bert):
        return BERTClassifier(bert, len(self.config['labels']))

    def score(self, outputs, rows, dataset):
        """accuracy, macro-F1 and per-class F1."""
        return metrics.classification_report(dataset.labels, onp.argmax(outputs, axis=1),
                                             self.config['labels'])

    def baseline(self, train_rows, rows, dataset):
        """The majority class of the training rows, predicted for every row."""
        ids = self.targets(train_rows)
        majority = onp.bincount(ids.astype(onp.int64)).argmax()
        return metrics.classification_report(dataset.labels, onp.full(len(rows), majority),
                                             self.config['labels'])

    def raw_rows(self, inputs):
        texts = tuple(t for t in (inputs.get('text'), inputs.get('text_b')) if t)
        if len(texts) not in self.num_texts:
            raise ValueError(f'{self.config["task"]}: give {" or ".join(map(str, self.num_texts))} '
                             f'text(s) (--text, --text-b)')
        return [tsv.Row(texts, None, '<input>')]

    def show(self, outputs, rows, dataset):
        return self.config['labels'][int(onp.argmax(outputs[0]))]


class PairClassifyTask(ClassifyTask):
    num_texts = (2,)


def within_half(y_hat, y):
    """``(hits, count)``: predictions within 0.5 of the gold score (the loop's 'acc' for regression)."""
    hits = (np.abs(y_hat - y) < 0.5).astype('float32')
    return hits.sum(), np.array(float(y.shape[0]), ctx=y.ctx)


class RegressTask(ClassifyTask):
    """Single-text or text-pair regression over ``<cls>`` (§16.6: STS-B), squared loss."""

    num_texts = (1, 2)
    loss = gluon.loss.L2Loss()
    accuracy = staticmethod(within_half)

    def fit(self, rows):
        self.config['labels'] = None

    def targets(self, rows):
        return scores(rows)

    def head(self, bert):
        return BERTRegressor(bert)

    def score(self, outputs, rows, dataset):
        """Pearson, Spearman, mean squared error."""
        return metrics.correlations(dataset.labels, onp.asarray(outputs))

    def baseline(self, train_rows, rows, dataset):
        """The mean training score, predicted for every row."""
        return metrics.correlations(dataset.labels, onp.full(len(rows), scores(train_rows).mean()))

    def show(self, outputs, rows, dataset):
        return f'{float(outputs[0]):.3f}'


def token_loss(y_hat, y):
    """Per-sentence sum of the cross-entropies of the labelled tokens (label >= 0)."""
    # (batch, seq, tags), (batch, seq) -> (batch, seq) -> (batch,)
    nll = -npx.pick(npx.log_softmax(y_hat, axis=-1), np.maximum(y, 0), axis=-1)
    return (nll * (y >= 0).astype('float32')).sum(axis=1)


def token_correct(y_hat, y):
    """``(correct, count)`` over the labelled tokens (the loop's 'acc' for tagging)."""
    mask = (y >= 0).astype('float32')
    hits = (y_hat.argmax(axis=-1).astype('float32') == y.astype('float32')).astype('float32')
    return (hits * mask).sum(), mask.sum()


class TagTask(Task):
    """Token tagging (NER): a tag per word from its first piece, scored by CoNLL entity F1."""

    loss = staticmethod(token_loss)
    accuracy = staticmethod(token_correct)

    def read(self, path):
        sentences = conll.read_conll(path, self.config['reader']['encoding'])
        if not sentences:
            raise DataError(f'{path}: no sentences')
        return sentences

    def fit(self, sentences):
        self.config['labels'] = conll.tag_names(sentences)

    def vocab_text(self, sentences):
        tokenize = get_tokenizer(self.config['tokenizer'])
        return [' '.join(p for w in s.words for p in tokenize(w)) for s in sentences]

    def encode(self, sentences, vocab, train=False, log=print):
        return TaggingDataset(sentences, vocab, self.config['labels'], self.config['seq_len'],
                              self.config['tokenizer'], log)

    def head(self, bert):
        return BERTTagger(bert, len(self.config['labels']))

    def tags(self, outputs, sentences, dataset):
        """Predicted tags of every word; words cut off by ``max_len`` get ``O``."""
        names = self.config['labels']
        return [[names[k] for k in onp.argmax(out[starts], axis=-1)] + ['O'] * (len(s.words) - len(starts))
                for out, starts, s in zip(outputs, dataset.word_starts, sentences)]

    def score(self, outputs, sentences, dataset):
        """Entity precision, recall, F1 (conlleval)."""
        return metrics.entity_f1([s.tags for s in sentences], self.tags(outputs, sentences, dataset))

    def baseline(self, train_sentences, sentences, dataset):
        """Every word tagged ``O``."""
        return metrics.entity_f1([s.tags for s in sentences], [['O'] * len(s.words) for s in sentences])

    def raw_rows(self, inputs):
        if not inputs.get('text'):
            raise ValueError('tag: give a sentence (--text), words separated by spaces')
        return [conll.Sentence(inputs['text'].split(), None, '<input>', 1)]

    def show(self, outputs, sentences, dataset):
        words, tags = sentences[0].words, self.tags(outputs, sentences, dataset)[0]
        entities = sorted(metrics.entity_spans(tags), key=lambda e: e[1])
        return '; '.join(f'{kind}: {" ".join(words[i:j + 1])}' for kind, i, j in entities) or '(no entity)'


def span_loss(y_hat, y):
    """The mean of the start and end cross-entropies."""
    return (_ce(y_hat[0], y[0]) + _ce(y_hat[1], y[1])) / 2


def span_correct(y_hat, y):
    """``(hits, count)``: windows whose best start and best end are both right (the loop's 'acc')."""
    hits = [(s.argmax(axis=1).astype('float32') == t).astype('float32') for s, t in zip(y_hat, y)]
    return (hits[0] * hits[1]).sum(), np.array(float(y[0].shape[0]), ctx=y[0].ctx)


class QATask(Task):
    """Span question answering (SQuAD v1.1): best span over sliding windows, EM and F1."""

    loss = staticmethod(span_loss)
    accuracy = staticmethod(span_correct)

    def read(self, path):
        return squad.read_squad(path)

    def fit(self, questions):
        self.config['labels'] = None

    def vocab_text(self, questions):
        return [' '.join(basic(text)) for q in questions for text in (q.question, q.context)]

    def encode(self, questions, vocab, train=False, log=print):
        c = self.config
        return qa.QADataset(questions, vocab, c['seq_len'], c['stride'], c['max_query_len'], train, log)

    def head(self, bert):
        return BERTSpanQA(bert)

    def answers(self, outputs, questions, dataset):
        best = qa.best_spans(dataset, outputs, len(questions), self.config['max_answer_len'])
        return ['' if b is None else qa.span_text(q.context, dataset.spans[i], b[1], b[2])
                for i, (q, b) in enumerate(zip(questions, best))]

    def score(self, outputs, questions, dataset):
        """SQuAD exact match and F1 (percent)."""
        return metrics.squad_em_f1(self.answers(outputs, questions, dataset),
                                   [[a.text for a in q.answers] for q in questions])

    def baseline(self, train_questions, questions, dataset):
        """The empty answer for every question."""
        return metrics.squad_em_f1([''] * len(questions), [[a.text for a in q.answers] for q in questions])

    def raw_rows(self, inputs):
        if not (inputs.get('question') and inputs.get('passage')):
            raise ValueError('qa: give --question and --passage')
        return [squad.Question(None, inputs['question'], inputs['passage'], [], '<input>')]

    def show(self, outputs, questions, dataset):
        return self.answers(outputs, questions, dataset)[0]


TASKS = {'classify': ClassifyTask, 'pair-classify': PairClassifyTask, 'regress': RegressTask,
         'tag': TagTask, 'qa': QATask}
DEFAULT_COLUMNS = {'classify': (('sentence',), 'label'),
                   'pair-classify': (('sentence1', 'sentence2'), 'label'),
                   'regress': (('sentence1', 'sentence2'), 'score')}


def make_task(name, max_len=128, fmt=None, text_columns=None, label_column=None, header=None,
              encoding='utf-8', tokenizer=None, stride=64, max_query_len=64, max_answer_len=30):
    """A task with its config: reader options, tokenizer and lengths (QA: window ``stride``,
    question and answer length caps)."""
    if name not in TASKS:
        raise ValueError(f'task {name!r}: choose from {", ".join(TASKS)}')
    columns, label = DEFAULT_COLUMNS.get(name, (None, None))
    config = dict(task=name, seq_len=max_len, tokenizer=tokenizer or 'whitespace',
                  reader=dict(fmt=fmt, text_columns=tuple(text_columns or columns or ()),
                              label_column=label_column or label, header=header, encoding=encoding))
    if name == 'qa':
        if tokenizer not in (None, 'basic'):
            raise ValueError('qa: the basic tokenizer is used (answers are character offsets)')
        config.update(tokenizer='basic', stride=stride, max_query_len=max_query_len,
                      max_answer_len=max_answer_len)
    get_tokenizer(config['tokenizer'])
    return TASKS[name](config)


def _head_rows(rows, n):
    return rows if n is None else rows[:n]


def split_rows(rows, fraction, seed):
    """``(rest, held_back)``: a ``fraction`` of ``rows`` held back, as ``finetune.split_off``
    splits SNLI (the last ``round(n * fraction)`` of ``RandomState(seed).permutation(n)``)."""
    order = onp.random.RandomState(seed).permutation(len(rows))
    cut = len(rows) - int(round(len(rows) * fraction))
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def finetune_task(task, train_file, test_file=None, pretrained_model='random', preset=None,
                  num_epochs=3, batch_size=32, lr=1e-4, max_examples=None, max_test_examples=None,
                  test_fraction=0.1, valid_fraction=0.0, num_trainable_blocks=None, devices=None,
                  seed=0, out=None, hybridize=True, dropout=0.1, animator=None, log=print,
                  lazy_embedding=False):
    """Fine-tune BERT with ``task``'s head (a :func:`make_task` object) through ``train.train``.

    Without ``test_file`` a ``test_fraction`` of the training file is held back
    (:func:`split_rows`: a fixed permutation per ``seed``). Returns ``(net, vocab, result)``
    with ``result`` = the loop's history plus ``test`` (the field's metric on the test set) and
    ``baseline`` (the trivial baseline's). With ``out`` the model goes to ``out/model``, and
    ``result.json`` and ``training_curve.png`` beside it.
    """
    finetune.set_seed(seed)
    devices = devices or default_devices()
    train_rows = task.read(train_file)
    if test_file is None:
        train_rows, test_rows = split_rows(train_rows, test_fraction, seed)
    else:
        test_rows = task.read(test_file)
    train_rows = _head_rows(train_rows, max_examples)
    test_rows = _head_rows(test_rows, max_test_examples)
    valid_rows = None
    if valid_fraction:
        train_rows, valid_rows = split_rows(train_rows, valid_fraction, seed + 1)
    task.fit(train_rows)
    if preset is None and pretrained_model == 'random':
        preset = 'bert.small'
    bert, vocab, bert_cfg = finetune.load_bert(pretrained_model, preset, devices, dropout,
                                               (task.vocab_text(train_rows), []))
    if task.config['seq_len'] > bert_cfg['max_len']:
        raise ValueError(f'max_len={task.config["seq_len"]}: the BERT has {bert_cfg["max_len"]} positions')
    log(f'BERT: {pretrained_model if pretrained_model != "random" else "random initialization (no pretraining)"}'
        f', {bert_cfg["num_blks"]} blocks, {bert_cfg["num_hiddens"]} hidden, {len(vocab)} tokens; '
        f'{task.config["task"]}: {len(train_rows)} training, {len(test_rows)} test examples')
    train_set = task.encode(train_rows, vocab, train=True, log=log)
    test_set = task.encode(test_rows, vocab, log=log)
    valid_iter = None if valid_rows is None else finetune.make_iter(
        task.encode(valid_rows, vocab, log=log), batch_size, False, True, sort=True)
    net = task.head(bert)
    net.output.initialize(ctx=devices)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    history = train(net, finetune.make_iter(train_set, batch_size, True, True, seed),
                    finetune.make_iter(test_set, batch_size, False, True, sort=True), task.loss,
                    make_trainer(net, lr, num_trainable_blocks, lazy_embedding=lazy_embedding),
                    num_epochs, devices,
                    split_f=split_batch, valid_iter=valid_iter, log=log, accuracy=task.accuracy,
                    animator=animator)
    result = dict(history, test=task.score(forward_all(net, test_set, batch_size, devices),
                                           test_rows, test_set),
                  baseline=task.baseline(train_rows, test_rows, test_set))
    log(f'test: {format_metrics(result["test"])}')
    doc = task.baseline.__doc__.strip().rstrip('.')
    log(f'baseline ({doc[0].lower() + doc[1:]}): {format_metrics(result["baseline"])}')
    if out:
        config = dict(bert_cfg, **task.config, pretrained=pretrained_model, train_file=train_file,
                      test_file=test_file, seed=seed)
        finetune.save_classifier(net, vocab, os.path.join(out, 'model'), config)
        finetune.write_json(os.path.join(out, 'result.json'), result)
        finetune.plot_history(history, os.path.join(out, 'training_curve.png'))
        log(f'saved the model, result.json and training_curve.png in {out}')
    return net, vocab, result


def format_metrics(report):
    return ', '.join(f'{k} {v:.3f}' for k, v in report.items())


def task_of(path):
    """The task named in a saved model's ``config.json``; None for an SNLI classifier."""
    try:
        with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
            return json.load(f).get('task')
    except (OSError, json.JSONDecodeError):
        return None


def load_model(path, devices=None):
    """``(net, vocab, task)`` of a model written by :func:`finetune_task`."""
    devices = devices or default_devices()
    vocab, config = finetune.read_saved_model(path)
    if config.get('task') not in TASKS:
        raise pretrained.PretrainedError(f'{path}: config.json names no task of {", ".join(TASKS)}')
    task = TASKS[config['task']](config)
    net = finetune.load_params_into(task.head(pretrained.build_bert(config, dropout=0.0)), path,
                                    devices)
    return net, vocab, task


def evaluate_file(path, data_file, batch_size=64, devices=None):
    """The field's metric of a saved model on a file read with the model's reader options."""
    devices = devices or default_devices()
    net, vocab, task = load_model(path, devices)
    rows = task.read(data_file)
    dataset = task.encode(rows, vocab)
    return task.score(forward_all(net, dataset, batch_size, devices), rows, dataset)


def predict(net, vocab, task, **inputs):
    """The prediction for raw input as a string: ``text`` (and ``text_b``) for the text tasks
    and tagging (words separated by spaces), ``question`` and ``passage`` for QA."""
    rows = task.raw_rows(inputs)
    dataset = task.encode(rows, vocab)
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    return task.show(forward_all(net, dataset, 1, [device]), rows, dataset)
