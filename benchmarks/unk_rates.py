"""How many tokens of each task's data a book-style word vocabulary maps to ``<unk>``.

No vocabulary of the book's ``bert.small`` can be had here, so the vocabulary is built the way
the book's pretraining builds it: ``d2l.Vocab(min_freq=5)`` with the reserved tokens, over the
lower-cased, whitespace-split sentences of WikiText-2 train (``read_wiki``, as ``_read_wiki``).
Each dataset is tokenized as its task does (``whitespace``, the book's) and also with ``basic``
(punctuation split off), and the share of ``<unk>`` tokens printed as a markdown table.

    python benchmarks/unk_rates.py [--shared ../shared/data]
"""
import argparse
import os

from d2l import mxnet as d2l

from gluon_bertft.data import conll, squad, tsv
from gluon_bertft.data.tokenize import TOKENIZERS, unk_rate
from gluon_bertft.data.wikitext import MIN_FREQ, RESERVED_TOKENS, read_wiki


def wiki_vocab(path):
    sentences = [s.split() for paragraph in read_wiki(path, shuffle=False) for s in paragraph]
    return d2l.Vocab(sentences, min_freq=MIN_FREQ, reserved_tokens=RESERVED_TOKENS)


def datasets(root):
    """``{name: (texts, task tokenizer)}``; CoNLL words are texts, tokenized one by one as tagging does."""
    path = lambda *p: os.path.join(root, *p)
    words = lambda file: [w for s in conll.read_conll(path('conll2003', file)) for w in s.words]
    qa_texts = lambda file: [t for q in squad.read_squad(path('squad', file))
                             for t in (q.question, q.context)]
    # a passage is shared by several questions: count it once
    unique = lambda texts: list(dict.fromkeys(texts))
    return {
        'SST-2 train': ([r.texts[0] for r in tsv.read_table(path('sst2', 'train.tsv'))], 'whitespace'),
        'SST-2 dev': ([r.texts[0] for r in tsv.read_table(path('sst2', 'dev.tsv'))], 'whitespace'),
        'SMS Spam': ([r.texts[0] for r in tsv.read_table(path('sms_spam', 'SMSSpamCollection'),
                                                         ('1',), '0')], 'whitespace'),
        'rt-polarity': ([r.texts[0] for r in tsv.read_lines(
            [path('rt-polarity', 'rt-polarity.pos'), path('rt-polarity', 'rt-polarity.neg')],
            'cp1252')], 'whitespace'),
        'SNLI dev': ([t for r in tsv.read_table(path('snli', 'snli_1.0_dev.jsonl'),
                                                ('sentence1', 'sentence2'), 'gold_label')
                      for t in r.texts], 'whitespace'),
        'CoNLL-2003 eng.train': (words('eng.train'), 'whitespace'),
        'CoNLL-2003 eng.testa': (words('eng.testa'), 'whitespace'),
        'SQuAD train subset': (unique(qa_texts('train-v1.1.subset.json')), 'basic'),
        'SQuAD dev (shared)': (unique(qa_texts('dev-v1.1.shared.json')), 'basic'),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shared', default=os.path.join('..', 'shared', 'data'))
    args = parser.parse_args()
    vocab = wiki_vocab(os.path.join(args.shared, 'wikitext-2', 'wiki.train.tokens.partial'))
    print(f'vocabulary: {len(vocab)} tokens (WikiText-2 train, partial; min_freq={MIN_FREQ})\n')
    print('| dataset | tokens (task tokenizer) | <unk>, task tokenizer | <unk>, whitespace | <unk>, basic |')
    print('|---|---|---|---|---|')
    for name, (texts, task_tokenizer) in datasets(args.shared).items():
        rates = {}
        for tok_name, tokenize in TOKENIZERS.items():
            unknown, total = unk_rate([tokenize(t) for t in texts], vocab)
            rates[tok_name] = (unknown / total, total)
        rate, total = rates[task_tokenizer]
        print(f'| {name} | {total:,} ({task_tokenizer}) | {100 * rate:.1f}% | '
              f'{100 * rates["whitespace"][0]:.1f}% | {100 * rates["basic"][0]:.1f}% |')


if __name__ == '__main__':
    main()
