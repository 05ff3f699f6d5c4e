"""Vocabulary coverage: the share of a text's characters that fall into unknown tokens.

A model sees nothing of a character its vocabulary maps to ``[UNK]``/``<unk>``: all-MiniLM's
English WordPiece vocabulary lacks most Chinese characters, and the book's WikiText vocabulary
any word it did not see five times. The book's own runs lose 6-14 % of *words* to ``<unk>``
(benchmarks/unk_rates.py); measured in characters, English text with an English vocabulary
stays well below :data:`WARN_UNKNOWN`, and text in a script the vocabulary lacks far above it
(docs/chinese.md has the measured table). The share is measured on at most :data:`FIRST_ROWS`
rows, through the tokenizer protocol's ``token_spans`` (:mod:`.words`).
"""
import collections

from ..common.errors import DataError

WARN_UNKNOWN = 0.30  # warn above this share of characters in unknown tokens
FIRST_ROWS = 1000  # rows of a file measured
EXAMPLES = 8  # lost pieces named in a warning

ADVICE = ('use a model whose vocabulary covers this text (Chinese: --pretrained '
          'hf:bert-base-chinese, with internet; docs/chinese.md), or fine-tune with --pretrained '
          'random, which builds its vocabulary from the training data')
BUILT = 'the vocabulary built from the training data'  # finetune --pretrained random names it so
ADVICES = {BUILT: 'a vocabulary built from the training data knows only the words of its rows: '
                  'train on more rows (--max-examples), or use a pretrained model whose '
                  'vocabulary covers this text (English: --pretrained minilm; Chinese: '
                  '--pretrained hf:bert-base-chinese, with internet; docs/chinese.md)'}

Coverage = collections.namedtuple('Coverage', 'share unknown chars lost')
Coverage.__doc__ = ('``share`` = ``unknown / chars`` (0.0 without characters): characters in '
                    'unknown tokens over the non-space characters; ``lost``: a Counter of the '
                    'texts of the unknown tokens.')


def coverage(tokenizer, texts):
    """The :class:`Coverage` of ``texts`` (str) under ``tokenizer`` (the protocol of
    :mod:`.words`: ``unk_id`` and ``token_spans``)."""
    unknown = chars = 0
    lost = collections.Counter()
    for text, spans in zip(texts, tokenizer.token_spans(texts)):
        chars += sum(not ch.isspace() for ch in text)
        for token_id, start, end in spans:
            if token_id == tokenizer.unk_id:
                unknown += end - start
                lost[text[start:end]] += 1
    return Coverage(unknown / chars if chars else 0.0, unknown, chars, lost)


def describe(found, where, vocabulary):
    """One sentence: the share of ``where``'s characters that ``vocabulary`` (e.g.
    ``"--pretrained minilm's vocabulary"``) loses, with the most frequent lost pieces."""
    examples = ' '.join(t for t, _ in found.lost.most_common(EXAMPLES))
    return (f'{100 * found.share:.1f}% of the characters of {where} ({found.unknown:,} of '
            f'{found.chars:,}) fall into unknown tokens of {vocabulary}'
            + (f' (lost, most frequent first: {examples})' if examples else ''))


def check_coverage(tokenizer, texts, where, vocabulary, max_unknown=None, log=print):
    """Measure the coverage of ``texts`` (the first :data:`FIRST_ROWS` rows' texts of
    ``where``, a file or ``'the input'``); log a warning above :data:`WARN_UNKNOWN`, raise
    ``DataError`` above ``max_unknown`` (a fraction, ``--max-unknown``), each ending with
    :data:`ADVICE`, or for :data:`BUILT` (where ``--pretrained random`` is no remedy) with its
    own :data:`ADVICES`. Returns the share."""
    found, advice = coverage(tokenizer, texts), ADVICES.get(vocabulary, ADVICE)
    if max_unknown is not None and found.share > max_unknown:
        raise DataError(f'{describe(found, where, vocabulary)}: above --max-unknown '
                        f'{max_unknown:g}; {advice}')
    if found.share > WARN_UNKNOWN:
        log(f'WARNING: {describe(found, where, vocabulary)}; the model cannot read them: {advice}')
    return found.share
