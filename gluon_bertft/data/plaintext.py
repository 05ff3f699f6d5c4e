"""Plain text for BERT pretraining: one paragraph per line, split into sentences and tokens.

The book's §15.9 reads WikiText, whose sentences are already split (``' . '``) and tokenized
(spaces). Other text, and Chinese text above all, has neither: :func:`read_text` splits each
line (a paragraph) into sentences after ``。！？`` (full-width) and ``! ?`` (and ``.`` before a
space or the line's end), keeping the mark with its sentence, and tokenizes every sentence with
the book-vocabulary splitter that fine-tuning uses (``basic``: lower-cased words and punctuation,
each CJK character a token of its own). Its output has the shape of the book's
``_read_wiki``: paragraphs as lists of sentences, each a string of space-separated tokens, so
:class:`~gluon_bertft.data.wikitext.WikiTextDataset` builds the vocabulary, the next-sentence
pairs and the masked-LM targets from it unchanged.
"""
import random
import re

from ..common.errors import DataError
from ..common.files import decoded_lines
from .tokenize import get_tokenizer

# a sentence ends after a run of end marks (with the closing quotes or brackets that follow);
# '.' only before whitespace or the line's end, so that 3.5 and e.g. U.S.A stay whole
_END = re.compile(r'(?:[。！？!?]+|\.(?=\s|$))[”’」』"\'）)]*')


def split_sentences(paragraph):
    """The sentences of ``paragraph`` (a str): cut after ``。！？!?`` and after ``.`` followed
    by whitespace or the end, the mark kept; the text after the last mark is a sentence too.
    Surrounding whitespace is stripped and empty sentences dropped."""
    sentences, start = [], 0
    for m in _END.finditer(paragraph):
        sentences.append(paragraph[start:m.end()].strip())
        start = m.end()
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def read_text(path, tokenizer='basic', shuffle=True, encoding='utf-8'):
    """Paragraphs of a plain-text file, as the book's ``_read_wiki`` returns them: each a list of
    sentences, each sentence its tokens joined by single spaces.

    ``path``: a text file, one paragraph per line (blank lines are skipped). ``tokenizer``: the
    name of a splitter of :mod:`.tokenize` (``basic``: words, punctuation marks and single CJK
    characters, lower-cased). As in the book, only paragraphs of at least two sentences are
    kept (next-sentence pairs need them), shuffled with Python's ``random`` when ``shuffle``.
    A sentence without a letter or digit (``...``, ``!!!``) is not one. Raises ``DataError``
    naming the file when it is empty or no line has two sentences.
    """
    tokenize = get_tokenizer(tokenizer)
    lines = decoded_lines(path, encoding)
    if not any(line.strip() for line in lines):
        raise DataError(f'{path}: the text is empty')
    paragraphs = []
    for line in lines:
        sentences = [' '.join(tokenize(s)) for s in split_sentences(line)]
        sentences = [s for s in sentences if any(ch.isalnum() for ch in s)]  # no word: none
        if len(sentences) >= 2:
            paragraphs.append(sentences)
    if not paragraphs:
        raise DataError(f'{path}: no line has two sentences (ended by 。！？ or . ! ?); '
                        'next-sentence pairs need paragraphs of two or more, one per line')
    if shuffle:
        random.shuffle(paragraphs)
    return paragraphs
