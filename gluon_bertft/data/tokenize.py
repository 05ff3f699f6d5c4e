"""Word-level tokenizers that fit the book's vocabulary, and the ``<unk>`` rate they give.

The book's vocabulary holds lower-cased whitespace tokens of WikiText-2, whose text has
punctuation split off. ``whitespace`` is the book's tokenizer (exact for its checkpoints and
for pre-tokenized data: SST-2, SNLI, CoNLL); ``basic`` also splits punctuation off words,
which raw text (SMS, SQuAD passages) needs to reach the vocabulary's words, gives the
character spans that SQuAD's answer offsets are mapped through, and makes every CJK
character a token of its own, as BERT's ``BasicTokenizer`` does (``tokenize_chinese_chars``:
Chinese is written without spaces, and its vocabularies hold characters). ``ptb`` splits raw
text the way SNLI's own text was tokenized (the Penn Treebank tokenizer), and leaves such text
as it is.
"""
import re
import unicodedata

import numpy as onp

from d2l import mxnet as d2l

RESERVED_TOKENS = ['<pad>', '<mask>', '<cls>', '<sep>']  # the book's, besides '<unk>'
# the CJK ideographs of BERT's BasicTokenizer._is_chinese_char (also the ``tokenizers``
# BertNormalizer's handle_chinese_chars): the unified ideographs, extensions A-E, and the
# compatibility ideographs; not Hiragana, Katakana or Hangul, which are written with spaces
CJK = ('\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f'
       '\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f')
_CJK = re.compile(f'[{CJK}]')
# one CJK ideograph, a run of other word characters, or one punctuation mark
_BASIC = re.compile(f'[{CJK}]|[^\\W{CJK}]+|[^\\w\\s]')


def whitespace(text):
    """The book's tokenization: lower-case, split on whitespace."""
    return text.lower().split()


def whitespace_spans(text):
    """``[(token, start, end)]`` of :func:`whitespace`, with character offsets in ``text``."""
    return [(m.group().lower(), m.start(), m.end()) for m in re.finditer(r'\S+', text)]


def basic_spans(text):
    """``[(token, start, end)]``: lower-cased runs of word characters, single CJK ideographs
    and single punctuation marks, with their character offsets in ``text``."""
    return [(m.group().lower(), m.start(), m.end()) for m in _BASIC.finditer(text)]


def basic(text):
    """Lower-case, split on whitespace, around every punctuation mark and around every CJK
    ideograph (``'剧情无聊，浪费时间。'`` -> ``['剧', '情', '无', '聊', '，', ...]``)."""
    return [m.group().lower() for m in _BASIC.finditer(text)]


# Penn Treebank clitics: what the tokenizer of SNLI's text splits off a word ("do n't", "man 's")
CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'m", "'d")
# abbreviations whose period stays before a capital (PTB's "Dr. Pepper", "St. Patrick")
ABBREVIATIONS = frozenset('mr mrs ms dr st mt rt ft jr sr vs etc inc ltd lt sgt capt prof ave'.split())
_QUOTES = {'"': ('``', "''"), '\u201c': ('``', "''"), '\u201d': ('``', "''")}
_OPENING = '([{`\'"\u2018\u201c'
_CLOSING = ')]},;:!?\'"\u2019\u201d'


def _punct(ch):
    return unicodedata.category(ch)[0] in 'PS'


def _clitic(word):
    """``[stem, clitic]`` where ``word`` ends in a PTB clitic (``don't``, ``man's``), else None."""
    flat = word.lower().replace('\u2019', "'")
    for clitic in CLITICS:
        if flat.endswith(clitic) and len(flat) > len(clitic) and flat[-len(clitic) - 1].isalnum():
            return [word[:-len(clitic)], word[-len(clitic):]]
    return None


def _ptb_word(word, final):
    """The PTB tokens of one whitespace token; ``final``: a sentence ends after it (it is the
    last, or the next starts with a capital), which is when a trailing period is split off."""
    if all(map(_punct, word)) or word.lower() in CLITICS:
        return [word]
    head, tail = [], []
    while len(word) > 1 and word[0] in _OPENING:
        head.append(_QUOTES.get(word[0], (word[0],))[0])
        word = word[1:]
    while len(word) > 1:
        if word.endswith('...'):
            tail.insert(0, '...')
            word = word[:-3]
        elif word[-1] in _CLOSING and word.lower() not in CLITICS:
            tail.insert(0, _QUOTES.get(word[-1], (None, word[-1]))[1])
            word = word[:-1]
        elif (word[-1] == '.' and final and word[-2] != '.' and '.' not in word[:-1]
              and word[:-1].lower() not in ABBREVIATIONS):
            tail.insert(0, '.')
            word = word[:-1]
        else:
            break
    return head + (_clitic(word) or [word]) + tail


def ptb(text):
    """Lower-cased tokens of raw text split as the Penn Treebank tokenizer split SNLI's
    sentences: punctuation off the ends of words (a period only where a sentence ends, not
    after ``Dr.`` or ``U.S.``), clitics off their words (``do n't``, ``man 's``), double quotes
    as ````` and ``''``; hyphens, apostrophes and periods inside words stay. Text tokenized so
    already is left as its whitespace tokens (``packages .`` and ``packages.`` both give
    ``packages``, ``.``)."""
    words = text.split()
    out = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        final = following is None or following[0].isupper()
        out += _ptb_word(word, final)
    return [t.lower() for t in out if t]


TOKENIZERS = {'whitespace': whitespace, 'basic': basic}


def cjk_share(texts):
    """The share of CJK ideographs among the non-space characters of ``texts`` (0.0 for no
    characters): above one half, text is "mostly CJK" and gets the ``basic`` tokenizer."""
    chars = cjk = 0
    for text in texts:
        chars += sum(not ch.isspace() for ch in text)
        cjk += len(_CJK.findall(text))
    return cjk / chars if chars else 0.0


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
