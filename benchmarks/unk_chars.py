"""The share of characters that fall into unknown tokens, as finetune/evaluate/predict/explain
measure it (``Task.check_coverage``: the first 1,000 rows of a file), on the shared English and
Chinese data, under three vocabularies:

- all-MiniLM-L6-v2's English WordPiece (``--pretrained minilm``);
- a book-style word vocabulary (the book's ``bert.small`` vocabulary cannot be had here, so it
  is built as §15.10 builds it: ``d2l.Vocab(min_freq=5)`` over WikiText-2 train), read with the
  tokenizer the task would use (``whitespace``; ``basic`` for QA and for mostly CJK text);
- the vocabulary ``--pretrained random`` builds from the training file (``task.vocab_text``),
  for the sets that have one.

    python benchmarks/unk_chars.py [--shared ../shared/data]
"""
import argparse
import os

from d2l import mxnet as d2l

from gluon_bertft.data.coverage import FIRST_ROWS, coverage
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.data.wikitext import MIN_FREQ, RESERVED_TOKENS, read_wiki
from gluon_bertft.data.words import tokenizer_for
from gluon_bertft.models import hub
from gluon_bertft.data.wordpiece import WordPiece
from gluon_bertft.tasks import make_task


def sets(root):
    """``{name: (task, measured file, training file or None)}``."""
    p = lambda *parts: os.path.join(root, *parts)
    table = dict(text_columns=('sentence',), label_column='label')
    return {
        'SST-2 dev': (make_task('classify', **table), p('sst2', 'dev.tsv'), p('sst2', 'train.tsv')),
        'SMS Spam': (make_task('classify', text_columns=('1',), label_column='0', format='tsv'),
                     p('sms_spam', 'SMSSpamCollection'), None),
        'SNLI dev': (make_task('snli'), p('snli', 'snli_1.0_dev.jsonl'), None),
        'CoNLL-2003 eng.testa': (make_task('tag'), p('conll2003', 'eng.testa'), p('conll2003', 'eng.train')),
        'SQuAD dev (shared)': (make_task('qa'), p('squad', 'dev-v1.1.shared.json'), None),
        'zh sentiment dev': (make_task('classify', text_columns=('text',), label_column='label'),
                             p('zh', 'sentiment', 'dev.jsonl'), p('zh', 'sentiment', 'train.jsonl')),
        'zh POS dev (words)': (make_task('tag'), p('zh', 'pos', 'dev.txt'), p('zh', 'pos', 'train.txt')),
        'zh NER dev (characters)': (make_task('tag'), p('zh', 'ner', 'dev.txt'), p('zh', 'ner', 'train.txt')),
    }


def share(task, rows, vocab, splitter=None):
    """The share under ``vocab``, read with the task's splitter or ``splitter``."""
    texts, own = task.coverage_input(rows[:FIRST_ROWS])
    return coverage(tokenizer_for(vocab, splitter or own), texts).share


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shared', default=os.path.join('..', 'shared', 'data'))
    args = parser.parse_args()
    wiki = [s.split() for para in read_wiki(os.path.join(args.shared, 'wikitext-2',
                                                         'wiki.train.tokens.partial'), shuffle=False)
            for s in para]
    book = d2l.Vocab(wiki, min_freq=MIN_FREQ, reserved_tokens=RESERVED_TOKENS)
    minilm = WordPiece.from_folder(hub.minilm_path())
    print(f'WikiText-2 vocabulary: {len(book)} tokens; MiniLM: {len(minilm)} pieces; first '
          f'{FIRST_ROWS} rows of each file\n')
    print('| data | tokenizer (book path) | MiniLM | book-style WikiText vocabulary | the same, other tokenizer | vocabulary built from the training file |')
    print('|---|---|---|---|---|---|')
    for name, (task, path, train) in sets(args.shared).items():
        train_rows = task.read(train) if train else None
        if train_rows is not None:
            task.fit(train_rows)
            task.choose_tokenizer(train_rows, None)  # finetune's choice without --tokenizer
        rows = task.read(path)
        own = (f'{100 * share(task, rows, build_vocab(task.vocab_text(train_rows))):.1f}%'
               if train_rows is not None else '')
        splitter = task.coverage_input(rows[:1])[1]
        other = 'basic' if splitter == 'whitespace' else 'whitespace'
        print(f'| {name} | {splitter} | {100 * share(task, rows, minilm):.1f}% | '
              f'{100 * share(task, rows, book):.1f}% | {other}: '
              f'{100 * share(task, rows, book, other):.1f}% | {own} |', flush=True)


if __name__ == '__main__':
    main()
