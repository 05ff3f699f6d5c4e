"""Classification and regression over ``<cls>`` (§16.6): ``classify`` (one text),
``pair-classify`` (two texts) and ``regress`` (one or two texts, a score)."""
import numpy as onp
from mxnet import gluon, np

from ..common import metrics
from ..common.errors import DataError, shorten
from ..data import tsv
from ..data.text import TextDataset, label_ids, scores
from ..data.tokenize import get_tokenizer
from ..models.heads import BERTClassifier, BERTRegressor
from ..training.evaluate import num_correct
from .base import LABEL_OPTIONS, TABLE_OPTIONS, ClassifierMixin, Task


class ClassifyTask(ClassifierMixin, Task):
    """Single-text classification: the majority-class baseline, accuracy and macro-F1."""

    name = 'classify'
    num_texts = (1,)
    columns = (('sentence',), 'label')
    OPTIONS = dict(TABLE_OPTIONS, **LABEL_OPTIONS)
    RAW_INPUTS = ('text',)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    accuracy = staticmethod(num_correct)

    @classmethod
    def configure(cls, config, options):
        """The table reader's options; the default columns are the task's."""
        columns, label = cls.columns
        config['reader'].update(fmt=options['format'], header=options['header'],
                                text_columns=list(options['text_columns'] or columns),
                                label_column=options['label_column'] or label)

    def read(self, path, labelled=True):
        reader = dict(self.config['reader'])
        if not labelled and reader['fmt'] != 'lines':
            reader['label_column'] = None
        rows = self.check_rows(tsv.read_labelled(path, **reader), path)
        if len(rows[0].texts) not in self.num_texts:
            raise DataError(f'{path}: --task {self.name} reads '
                            f'{" or ".join(map(str, self.num_texts))} text column(s), got '
                            f'{len(rows[0].texts)} (--text-columns)')
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
        labels = (onp.zeros(len(rows), onp.float32) if rows[0].label is None
                  else self.targets(rows))
        return TextDataset(rows, self.tokenizer(vocab), self.max_len, labels)

    def head(self, bert):
        return BERTClassifier(bert, len(self.config['labels']))

    def raw_rows(self, inputs):
        texts = tuple(t for t in (inputs.get('text'), inputs.get('text_b')) if t and t.strip())
        if len(texts) not in self.num_texts:
            raise DataError(f'{self.name}: give {" or ".join(map(str, self.num_texts))} '
                            f'text(s) (--text, --text-b)')
        return [tsv.Row(texts, None, '<input>')]


class PairClassifyTask(ClassifyTask):
    """Text-pair classification (a generic table: see docs/tasks.md for SNLI files)."""

    name = 'pair-classify'
    num_texts = (2,)
    min_len = 5  # <cls>, two <sep> and a token of each text
    RAW_INPUTS = ('text', 'text_b')
    columns = (('sentence1', 'sentence2'), 'label')


def within_half(y_hat, y):
    """``(hits, count)``: predictions within 0.5 of the gold score (the loop's 'acc' for regression)."""
    hits = (np.abs(y_hat - y) < 0.5).astype('float32')
    return hits.sum(), np.array(float(y.shape[0]), ctx=y.ctx)


class RegressTask(ClassifyTask):
    """Single-text or text-pair regression over ``<cls>`` (§16.6: STS-B), squared loss."""

    name = 'regress'
    num_texts = (1, 2)
    columns = (('sentence1', 'sentence2'), 'score')
    OPTIONS = dict(TABLE_OPTIONS)  # a score has no classes to weigh or name
    RAW_INPUTS = ('text', 'text_b')
    EXPLAIN_OPTIONS = ()
    HF_HEAD = ('BertForSequenceClassification', 'regression')
    check_saved = classmethod(Task.check_saved.__func__)  # no labels
    explain_targets = Task.explain_targets  # the score
    metric = 'pearson'
    loss = gluon.loss.L2Loss()
    accuracy = staticmethod(within_half)

    def fit(self, rows):
        self.config['labels'] = None
        if onp.ptp(scores(rows)) == 0:
            raise DataError(f'{rows[0].where}: every training score is {shorten(rows[0].label)}; there is '
                            'nothing to learn (and no correlation to report)')

    def targets(self, rows):
        return scores(rows)

    def soft_loss(self, y_hat, y, teacher, temperature):
        """The squared loss towards the teacher's score (no temperature: a score has no
        distribution)."""
        return self.loss(y_hat, teacher)

    def teacher_labels(self, dataset, teacher):
        """The teacher's scores."""
        return teacher[0].astype(onp.float32)

    def head(self, bert):
        return BERTRegressor(bert)

    def score(self, outputs, rows, dataset):
        """Pearson, Spearman, mean squared error."""
        return metrics.correlations(dataset.labels, onp.asarray(outputs))

    def baseline(self, train_rows, rows, dataset):
        """The mean training score, predicted for every row."""
        return metrics.correlations(dataset.labels, onp.full(len(rows), scores(train_rows).mean()))

    def records(self, outputs, rows, dataset):
        return [dict(score=round(float(y), 6)) for y in onp.asarray(outputs).reshape(-1)]

    def show(self, outputs, rows, dataset):
        return f'{float(onp.asarray(outputs).reshape(-1)[0]):.3f}'
