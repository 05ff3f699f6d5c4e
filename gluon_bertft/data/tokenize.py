"""Word-level tokenizers that fit the book's vocabulary, and the ``<unk>`` rate they give.

The book's vocabulary holds lower-cased whitespace tokens of WikiText-2, whose text has
punctuation split off. ``whitespace`` is the book's tokenizer (exact for its checkpoints and
for pre-tokenized data: SST-2, SNLI, CoNLL); ``basic`` also splits punctuation off words,
which raw text (SMS, SQuAD passages) needs to reach the vocabulary's words, and gives the
character spans that SQuAD's answer offsets are mapped through.
"""
import re

import numpy as onp

from d2l import mxnet as d2l

RESERVED_TOKENS = ['<pad>', '<mask>', '<cls>', '<sep>']  # the book's, besides '<unk>'
_BASIC = re.compile(r'\w+|[^\w\s]')


def whitespace(text):
    """The book's tokenization: lower-case, split on whitespace."""
    return text.lower().split()


def basic_spans(text):
    """``[(token, start, end)]``: lower-cased runs of word characters and single punctuation
    marks, with their character offsets in ``text``."""
    return [(m.group().lower(), m.start(), m.end()) for m in _BASIC.finditer(text)]


def basic(text):
    """Lower-case, split on whitespace and around every punctuation mark."""
    return [m.group().lower() for m in _BASIC.finditer(text)]


TOKENIZERS = {'whitespace': whitespace, 'basic': basic}


def get_tokenizer(name):
    if name not in TOKENIZERS:
        raise ValueError(f'tokenizer {name!r}: choose from {", ".join(TOKENIZERS)}')
    return TOKENIZERS[name]


def unk_rate(token_lists, vocab):
    """``(unknown, total)``: how many tokens of ``token_lists`` ``vocab`` maps to ``<unk>``."""
    known = vocab.token_to_idx
    unknown = total = 0
    for tokens in token_lists:
        total += len(tokens)
        unknown += sum(t not in known for t in tokens)
    return unknown, total


def build_vocab(texts, min_freq=1):
    """The book's word vocabulary (``d2l.Vocab`` with :data:`RESERVED_TOKENS`) of the
    lower-cased whitespace tokens of ``texts``: what random initialization embeds."""
    return d2l.Vocab([t.lower().split() for t in texts], min_freq=min_freq,
                     reserved_tokens=RESERVED_TOKENS)


def word_input_arrays(n, max_len, pad_id):
    """Empty inputs of ``n`` pre-tokenized sentences (the tokenizer protocol's
    ``encode_words``): int32 ``(n, max_len)`` token ids all ``pad_id``, float32 ``(n,)`` valid
    lengths and int64 ``(n,)`` kept-word counts; ``ValueError`` below 3 positions."""
    if max_len < 3:
        raise ValueError(f'max_len={max_len}: needs the class token, one word and the separator')
    return (onp.full((n, max_len), pad_id, dtype=onp.int32), onp.zeros(n, dtype=onp.float32),
            onp.zeros(n, dtype=onp.int64))
