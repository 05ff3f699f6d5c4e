"""SNLI as §16.7 reads it: the task ``snli``.

The book's reader (:func:`~gluon_bertft.data.snli.read_snli`: pairs labelled ``-`` dropped,
entailment 0 / contradiction 1 / neutral 2), the book's ``SNLIBERTDataset`` arrays (lower-cased
whitespace tokens, the book's truncation) and ``BERTClassifier`` with three outputs.
"""
import numpy as onp
from mxnet import gluon

from ..common.errors import ConfigError, DataError
from ..data import tsv
from ..data.snli import LABELS, read_snli
from ..data.text import TextDataset
from ..data.words import tokenizer_for
from ..models.heads import BERTClassifier
from ..training.evaluate import num_correct
from .base import LABEL_OPTIONS, ClassifierMixin, Task, check_saved_labels


class SNLITask(ClassifierMixin, Task):
    """Rows are ``(premise, hypothesis, label id)``; raw input is split as SNLI's text is
    (punctuation split off), so ``packages.`` reaches the vocabulary's ``packages``."""

    name = 'snli'
    min_len = 5  # <cls>, two <sep> and a token of each text
    OPTIONS = dict(data='SNLI', **LABEL_OPTIONS)
    RAW_INPUTS = ('premise', 'hypothesis')
    needs_train = False  # the book's run downloads SNLI (--data)
    AUTO_TOKENIZER = False  # the book's whitespace tokens, always
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    accuracy = staticmethod(num_correct)

    @classmethod
    def check_options(cls, config):
        super().check_options(config)
        if config.data != 'SNLI' and config.train:
            raise ConfigError('--data: applies to --task snli without --train (the SNLI '
                              'folder); give the files with --train and --test')
        if config.tokenizer is not None:
            raise ConfigError('--tokenizer: --task snli tokenizes as the book does (lower-cased '
                              'whitespace tokens); the table tasks take --tokenizer')

    @classmethod
    def check_saved(cls, config, check, where):
        check_saved_labels(config, check, where, size=3)

    def read(self, path, labelled=True):
        columns = read_snli(path, not labelled, self.config['reader'].get('encoding', 'utf-8'))
        return self.check_rows(list(zip(*columns)), path)

    def fit(self, rows):
        found = {row[2] for row in rows}
        if len(found) == 1:  # as the table tasks refuse it (ClassifyTask.fit)
            raise DataError(f'the SNLI training data has one label only ({LABELS[found.pop()]}): '
                            'there is nothing to learn')
        self.config['labels'] = list(LABELS)

    def vocab_text(self, rows):
        return [row[0] for row in rows] + [row[1] for row in rows]  # the book's order

    def targets(self, rows):
        return [row[2] for row in rows]

    def encode(self, rows, vocab, train=False, log=print):
        premises, hypotheses, labels = (list(column) for column in list(zip(*rows))[:3])
        labels = [max(0, y) for y in labels]
        # the book's SNLIBERTDataset arrays (lower-cased whitespace tokens, the book's pair
        # truncation); raw input is split at punctuation as SNLI's text is; a WordPiece model
        # brings its own tokenizer and HF's truncation
        splitter = 'basic' if len(rows[0]) > 3 else 'whitespace'
        pairs = [tsv.Row((p, h), None, None) for p, h in zip(premises, hypotheses)]
        dataset = TextDataset(pairs, tokenizer_for(vocab, splitter), self.max_len,
                              onp.asarray(labels, dtype=onp.float32))
        log(f'read {len(dataset)} examples')  # the book's line, to the caller's log
        return dataset

    def coverage_input(self, rows):
        """Premises and hypotheses, split as :meth:`encode` splits them."""
        return ([row[k] for row in rows for k in (0, 1)],
                'basic' if rows and len(rows[0]) > 3 else 'whitespace')

    def head(self, bert):
        return BERTClassifier(bert, 3)

    def explain_input(self, row):
        return dict(premise=row[0], hypothesis=row[1])

    def raw_rows(self, inputs):
        premise, hypothesis = inputs.get('premise'), inputs.get('hypothesis')
        if not (premise and premise.strip() and hypothesis and hypothesis.strip()):
            raise DataError('snli: give --premise and --hypothesis')
        return [(premise, hypothesis, -1, 'raw')]
