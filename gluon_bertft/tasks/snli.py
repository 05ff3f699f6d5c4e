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
from ..data.tokenize import ptb
from ..data.words import tokenizer_for
from ..models.heads import BERTClassifier
from ..training.evaluate import num_correct
from .base import LABEL_OPTIONS, ClassifierMixin, Task, check_saved_labels, is_wordpiece


def split_raw(rows):
    """``(premises, hypotheses)`` of SNLI rows as the book's whitespace tokenizer reads them:
    a parse's tokens as they are (the book's arrays), raw text (``row[3]``: ``--premise``,
    ``explain``, a ``.jsonl`` without parses) split first as SNLI's own text was
    (:func:`~gluon_bertft.data.tokenize.ptb`, which leaves tokenized text as it is), so that
    ``packages.`` reaches the vocabulary's ``packages`` on every path."""
    raw = [len(row) > 3 and row[3] is True for row in rows]
    split = lambda k: [' '.join(ptb(row[k])) if r else row[k] for row, r in zip(rows, raw)]
    return split(0), split(1)


class SNLITask(ClassifierMixin, Task):
    """Rows are ``(premise, hypothesis, label id, raw)``: ``raw`` when the texts are raw
    sentences, which a book-vocabulary model splits as SNLI's text was split
    (:func:`split_raw`), in training, evaluation, prediction and explanation alike."""

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
                              'whitespace tokens, raw sentences split as SNLI\'s were first); '
                              'the table tasks take --tokenizer')

    @classmethod
    def check_saved(cls, config, check, where):
        check_saved_labels(config, check, where, size=3)

    def read(self, path, labelled=True):
        columns = read_snli(path, not labelled, self.config['reader'].get('encoding', 'utf-8'),
                            raw_flags=True)
        return self.check_rows(list(zip(*columns)), path)

    def fit(self, rows):
        found = {row[2] for row in rows}
        if len(found) == 1:  # as the table tasks refuse it (ClassifyTask.fit)
            raise DataError(f'the SNLI training data has one label only ({LABELS[found.pop()]}): '
                            'there is nothing to learn')
        self.config['labels'] = list(LABELS)

    def vocab_text(self, rows):
        premises, hypotheses = split_raw(rows)
        return premises + hypotheses  # the book's order

    def targets(self, rows):
        return [row[2] for row in rows]

    def encode(self, rows, vocab, train=False, log=print):
        labels = [max(0, row[2]) for row in rows]
        # the book's SNLIBERTDataset arrays (lower-cased whitespace tokens, the book's pair
        # truncation), raw text split first as SNLI's was; a WordPiece model brings its own
        # tokenizer (which splits punctuation) and HF's truncation
        premises, hypotheses = (([row[0] for row in rows], [row[1] for row in rows])
                                if is_wordpiece(vocab) else split_raw(rows))
        pairs = [tsv.Row((p, h), None, None) for p, h in zip(premises, hypotheses)]
        dataset = TextDataset(pairs, tokenizer_for(vocab, 'whitespace'), self.max_len,
                              onp.asarray(labels, dtype=onp.float32))
        log(f'read {len(dataset)} examples')  # the book's line, to the caller's log
        return dataset

    def coverage_input(self, rows):
        """Premises and hypotheses as a book vocabulary reads them (:func:`split_raw`: raw text
        split as SNLI's was, then whitespace); a WordPiece tokenizer splits punctuation the
        same way itself."""
        premises, hypotheses = split_raw(rows)
        return [t for pair in zip(premises, hypotheses) for t in pair], 'whitespace'

    def head(self, bert):
        return BERTClassifier(bert, 3)

    def explain_input(self, row):
        return dict(premise=row[0], hypothesis=row[1])

    def raw_rows(self, inputs):
        premise, hypothesis = inputs.get('premise'), inputs.get('hypothesis')
        if not (premise and premise.strip() and hypothesis and hypothesis.strip()):
            raise DataError('snli: give --premise and --hypothesis')
        return [(premise, hypothesis, -1, True)]
