"""Reader for the CoNLL column format of token tagging (CoNLL-2003: NER, POS, chunks).

One token per line, the token in the first column and its tags in the others (CoNLL-2003:
``word POS chunk NER``); a blank line ends a sentence; ``-DOCSTART-`` lines separate
documents. The tag is read from one column (default the last). Tags come in two schemes:

``iob``
    spans: ``O``, ``B-X``, ``I-X``, IOB1 (CoNLL-2003: ``I-`` starts a span, ``B-`` only
    between two spans of one type) or IOB2/BIO; both are converted to IOB2, which leaves IOB2
    unchanged, so every scheme ends in the same tags (entities, chunks).
``plain``
    one class per token (POS tags), read as they are.

:func:`decide_scheme` picks one from the tags (``--tag-scheme auto``).
"""
import collections
import re

from ..common.errors import DataError, shorten
from ..common.files import blank, decoded_lines
from ..common.metrics import to_iob2

Sentence = collections.namedtuple('Sentence', 'words tags path line')  # line of the first word
SCHEMES = ('iob', 'plain')
_TAG = re.compile(r'O|[BI]-\S+')


def is_iob_tag(tag):
    """Whether ``tag`` is ``O``, ``B-TYPE`` or ``I-TYPE``."""
    return bool(_TAG.fullmatch(tag))


def decide_scheme(sentences):
    """``'iob'`` if every tag of ``sentences`` is ``O``, ``B-X`` or ``I-X``, else ``'plain'``."""
    return 'iob' if all(is_iob_tag(t) for s in sentences for t in s.tags) else 'plain'


def as_iob2(sentences):
    """The sentences with their IOB1/IOB2 tags in IOB2 (:func:`to_iob2`)."""
    return [s._replace(tags=to_iob2(s.tags)) for s in sentences]


def _tag(fields, where, column, scheme):
    """The tag of one line's ``fields``: column ``column`` (None: the last); ``DataError``
    naming ``where`` (``path:line``) for a missing column or, with ``scheme='iob'``, a tag that
    is not ``O``, ``B-TYPE`` or ``I-TYPE``."""
    if len(fields) < 2:
        raise DataError(f'{where}: one column ({shorten(fields[0])}); expected the token '
                        f'first and its tag last')
    if column is not None and len(fields) <= column:
        raise DataError(f'{where}: {len(fields)} column(s), but the tag column is {column} '
                        f'(--tag-column, counted from 0)')
    tag = fields[-1 if column is None else column]
    if scheme == 'iob' and not is_iob_tag(tag):
        raise DataError(f'{where}: tag {shorten(tag)} is not O, B-TYPE or I-TYPE '
                        f'(IOB1 or IOB2; --tag-scheme plain reads any tag)')
    return tag


def read_conll(path, encoding='utf-8', tagged=True, column=None, scheme='iob'):
    """Sentences of a CoNLL file, the tag from ``column`` (0-based; None: the last).

    ``scheme='iob'``: tags in IOB2; a tag that is not ``O``, ``B-TYPE`` or ``I-TYPE`` is an
    error naming the line. ``scheme='plain'``: tags as written. A line without the tag column
    is an error naming the line (``DataError``). With ``tagged=False`` (prediction) a line may
    hold the word alone, and sentences have ``tags=None``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f'scheme {scheme!r}: one of {SCHEMES}')
    sentences, words, tags, first = [], [], [], None

    def flush():
        if words:
            kept = None if not tagged else to_iob2(tags) if scheme == 'iob' else list(tags)
            sentences.append(Sentence(list(words), kept, path, first))
        words.clear()
        tags.clear()

    for lineno, line in enumerate(decoded_lines(path, encoding), 1):
        fields = line.split()
        if not fields or fields[0] == '-DOCSTART-':
            flush()
            continue
        if blank(fields[0]):
            raise DataError(f'{path}:{lineno}: the word {fields[0]!r} has nothing visible in it '
                            '(zero-width, control or format characters only)')
        if tagged:
            tags.append(_tag(fields, f'{path}:{lineno}', column, scheme))
        if not words:
            first = lineno
        words.append(fields[0])
    flush()
    return sentences


def tag_names(sentences):
    """``'O'``, then ``B-`` and ``I-`` of every entity type of ``sentences``, sorted by type."""
    types = sorted({t[2:] for s in sentences for t in s.tags if t != 'O'})
    return ['O'] + [f'{prefix}-{t}' for t in types for prefix in 'BI']


def plain_tag_names(sentences):
    """The sorted set of the tags of ``sentences`` (plain tags: one class per tag)."""
    return sorted({t for s in sentences for t in s.tags})
