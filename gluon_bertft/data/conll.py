"""Reader for the CoNLL column format of token tagging (e.g. CoNLL-2003 NER).

One token per line, the token in the first column and its tag in the last; a blank line
ends a sentence; ``-DOCSTART-`` lines separate documents. Tags are IOB1 (CoNLL-2003: ``I-``
starts an entity, ``B-`` only between two entities of one type) or IOB2/BIO; both are
converted to IOB2, which leaves IOB2 unchanged, so every scheme ends in the same tags.
"""
import collections
import re

from ..common.errors import DataError, shorten
from ..common.files import decoded_lines
from ..common.metrics import to_iob2

Sentence = collections.namedtuple('Sentence', 'words tags path line')  # line of the first word
_TAG = re.compile(r'O|[BI]-\S+')


def read_conll(path, encoding='utf-8', tagged=True):
    """Sentences of a CoNLL file with IOB2 tags; a line without a tag column, or a tag that is
    not ``O``, ``B-TYPE`` or ``I-TYPE``, is an error naming the line. With ``tagged=False``
    (prediction) a line may hold the word alone, and sentences have ``tags=None``."""
    sentences, words, tags, first = [], [], [], None

    def flush():
        if words:
            sentences.append(Sentence(list(words), to_iob2(tags) if tagged else None, path, first))
        words.clear()
        tags.clear()

    for lineno, line in enumerate(decoded_lines(path, encoding), 1):
        fields = line.split()
        if not fields or fields[0] == '-DOCSTART-':
            flush()
            continue
        if not tagged:
            if not words:
                first = lineno
            words.append(fields[0])
            continue
        if len(fields) < 2:
            raise DataError(f'{path}:{lineno}: one column ({shorten(fields[0])}); expected the token '
                            f'first and its tag last')
        if not _TAG.fullmatch(fields[-1]):
            raise DataError(f'{path}:{lineno}: tag {shorten(fields[-1])} is not O, B-TYPE or I-TYPE '
                            f'(IOB1 or IOB2)')
        if not words:
            first = lineno
        words.append(fields[0])
        tags.append(fields[-1])
    flush()
    return sentences


def tag_names(sentences):
    """``'O'``, then ``B-`` and ``I-`` of every entity type of ``sentences``, sorted by type."""
    types = sorted({t[2:] for s in sentences for t in s.tags if t != 'O'})
    return ['O'] + [f'{prefix}-{t}' for t in types for prefix in 'BI']
