"""Span question answering (§16.6, SQuAD v1.1): the best span over sliding windows."""
from mxnet import gluon, np

from ..common import metrics
from ..common.errors import ConfigError, DataError
from ..data import qa, squad
from ..data.tokenize import basic
from ..models.heads import BERTSpanQA
from ..training.distill import kl_div
from .base import Target, Task

_ce = gluon.loss.SoftmaxCrossEntropyLoss()


def span_loss(y_hat, y):
    """The mean of the start and end cross-entropies."""
    return (_ce(y_hat[0], y[0]) + _ce(y_hat[1], y[1])) / 2


def span_correct(y_hat, y):
    """``(hits, count)``: windows whose best start and best end are both right (the loop's 'acc')."""
    hits = [(s.argmax(axis=1).astype('float32') == t).astype('float32') for s, t in zip(y_hat, y)]
    return (hits[0] * hits[1]).sum(), np.array(float(y[0].shape[0]), ctx=y[0].ctx)


class QATask(Task):
    """SQuAD exact match and F1 (percent); the baseline answers the empty string."""

    name, metric = 'qa', 'f1'  # SQuAD's F1 picks the best epoch
    loss, accuracy = staticmethod(span_loss), staticmethod(span_correct)
    OPTIONS = dict(stride=64, max_query_len=64, max_answer_len=30)
    RAW_INPUTS = ('question', 'passage')
    HF_HEAD = ('BertForQuestionAnswering', None)
    AUTO_TOKENIZER = False  # basic, always
    per_token = True

    def soft_loss(self, y_hat, y, teacher, temperature):
        """The mean of the start's and the end's ``T^2`` KL divergences (over positions) from
        the teacher's."""
        return (kl_div(y_hat[0], teacher[0], temperature)
                + kl_div(y_hat[1], teacher[1], temperature)) / 2

    @classmethod
    def configure(cls, config, options):
        """Windows over the passage (``stride``), question and answer caps, in tokens; the
        ``basic`` tokenizer (answers are character offsets)."""
        config.update(tokenizer='basic', **{k: options[k] for k in cls.OPTIONS})

    @classmethod
    def check_options(cls, config):
        super().check_options(config)
        if config.tokenizer not in (None, 'basic'):
            raise ConfigError('--tokenizer: qa uses basic (answers are character offsets)')

    @classmethod
    def check_saved(cls, config, check, where):
        for key in cls.OPTIONS:
            check(key, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                  'a positive integer')

    def read(self, path, labelled=True):
        return squad.read_squad(path, labelled, self.config['reader'].get('encoding', 'utf-8'))

    def fit(self, questions):
        self.config['labels'] = None

    def vocab_text(self, questions):
        return [' '.join(basic(text)) for q in questions for text in (q.question, q.context)]

    def encode(self, questions, vocab, train=False, log=print):
        c = self.config  # answers map back through the tokens' character offsets
        dataset = qa.QADataset(questions, self.tokenizer(vocab), c['max_len'], c['stride'],
                               c['max_query_len'], train, log)
        return self.check_windows(dataset, questions, train)

    def check_windows(self, dataset, questions, train):
        """A training set whose every window was dropped (no answer fits) is an error."""
        if train and len(dataset) == 0:
            raise DataError(f'{questions[0].where.split(" (")[0]}: no training window holds an '
                            f'answer (--max-len {self.max_len}, --stride {self.config["stride"]}, '
                            f'--max-query-len {self.config["max_query_len"]})')
        return dataset

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

    def explain_targets(self, questions, dataset, outputs, label=None, word=None):
        """The start and the end of each predicted answer, in the window that holds it."""
        out = []
        best = qa.best_spans(dataset, outputs, len(questions), self.config['max_answer_len'])
        for q, b in zip(questions, best):
            if b is None:
                raise DataError(f'{q.where}: no window to explain (an empty passage?)')
            _, first, last, w = b
            shift = int(dataset.window_offset[w]) - int(dataset.window_start[w])
            out.append((w, [Target(first + shift, 0, 'answer start'),
                            Target(last + shift, 1, 'answer end')]))
        return out

    def coverage_input(self, questions):
        """Questions and passages (each passage once), split by ``basic``."""
        return list(dict.fromkeys(t for q in questions for t in (q.question, q.context))), 'basic'

    def explain_input(self, q):
        return dict(question=q.question, passage=q.context)

    def raw_rows(self, inputs):
        if not all((inputs.get(k) or '').strip() for k in ('question', 'passage')):
            raise DataError('qa: give --question and --passage')
        return [squad.Question(None, inputs['question'], inputs['passage'], [], '<input>')]

    def records(self, outputs, questions, dataset):
        best = qa.best_spans(dataset, outputs, len(questions), self.config['max_answer_len'])
        return [dict(id=q.qid, answer=answer, score=None if b is None else round(float(b[0]), 6))
                for q, answer, b in zip(questions, self.answers(outputs, questions, dataset), best)]

    def show(self, outputs, questions, dataset):
        return self.answers(outputs, questions, dataset)[0]
