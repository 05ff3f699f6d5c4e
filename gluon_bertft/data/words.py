"""The tokenizer protocol, and the book's word vocabulary behind it.

A task encodes its rows through one protocol, whatever the model's vocabulary:

``specials``
    ``(cls, sep, pad)`` ids.
``encode_texts(texts, max_len)``
    single texts or pairs (1- or 2-tuples of str) -> int32 ``(n, max_len)`` tokens and
    segments, float32 ``(n,)`` valid lengths.
``encode_words(sentences_words, max_len)``
    pre-tokenized sentences -> tokens, segments, valid lengths, ``word_starts`` (per sentence,
    each kept word's first position) and ``num_kept`` (words kept).
``token_spans(texts)``
    per text, ``[(token id, start, end)]`` with character offsets in the text (``unk_id`` is
    the unknown token's id): what :mod:`.coverage` measures.
``encode_qa(questions, max_query_len)``
    per question: question ids, passage ids, passage token spans (character offsets) and the
    first answer's token range.

A Hugging Face model's :class:`~gluon_bertft.data.wordpiece.WordPiece` has these methods; a
book-format model's vocabulary (a d2l ``Vocab``) gets them from :class:`WordTokenizer` with the
task's word splitter (``whitespace``, the book's, or ``basic``): :func:`tokenizer_for`.
"""
import numpy as onp

from .qa import first_answer
from .text import encode_texts
from .tokenize import basic, basic_spans, get_tokenizer, whitespace_spans, word_input_arrays
from .wordpiece import WordPiece


def tokenizer_for(vocab, name='whitespace'):
    """The protocol for ``vocab``: a WordPiece as it is, a word vocabulary with the splitter
    ``name``."""
    return vocab if isinstance(vocab, WordPiece) else WordTokenizer(vocab, name)


class WordTokenizer:
    """The book's word vocabulary (``token_to_idx`` with ``<cls>``, ``<sep>``, ``<pad>``,
    ``<unk>``) and a word splitter, behind the tokenizer protocol (module docstring)."""

    def __init__(self, vocab, name='whitespace'):
        self.vocab, self.name, self.split = vocab, name, get_tokenizer(name)
        idx = vocab.token_to_idx
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = (
            idx['<cls>'], idx['<sep>'], idx['<pad>'], idx['<unk>'])

    @property
    def specials(self):
        return self.cls_id, self.sep_id, self.pad_id

    def ids(self, tokens):
        idx = self.vocab.token_to_idx
        return [idx.get(t, self.unk_id) for t in tokens]

    def token_spans(self, texts):
        """Per text ``[(id, start, end)]`` of its tokens (the splitter's), character offsets."""
        spans = basic_spans if self.name == 'basic' else whitespace_spans
        return [[(self.vocab.token_to_idx.get(t, self.unk_id), s, e) for t, s, e in spans(text)]
                for text in texts]

    def encode_texts(self, texts, max_len):
        """A pair exactly as the book encodes SNLI (``snli.encode_pairs``); a single text as
        ``<cls> tokens <sep>``, cut to ``max_len - 2`` tokens (§16.6)."""
        return encode_texts(texts, self.vocab, max_len, self.name)

    def encode_words(self, sentences_words, max_len):
        """Each word split on its own; words are kept while their tokens fit in
        ``max_len - 2``, the rest cut whole."""
        tokens, valid_lens, num_kept = word_input_arrays(len(sentences_words), max_len, self.pad_id)
        word_starts = []
        for i, words in enumerate(sentences_words):
            ids, starts = [self.cls_id], []
            for word in words:
                pieces = self.ids(self.split(word))
                if len(ids) + len(pieces) > max_len - 1:
                    break
                starts.append(len(ids))
                ids += pieces
            ids.append(self.sep_id)
            tokens[i, :len(ids)] = ids
            valid_lens[i], num_kept[i] = len(ids), len(starts)
            word_starts.append(onp.array(starts, dtype=onp.int64))
        return tokens, onp.zeros_like(tokens), valid_lens, word_starts, num_kept

    def encode_qa(self, questions, max_query_len):
        """Lower-cased words and punctuation (``basic``), with character offsets."""
        encoded = []
        for q in questions:
            tokens = basic_spans(q.context)
            spans = [(s, e) for _, s, e in tokens]
            encoded.append((self.ids(basic(q.question)[:max_query_len]),
                            self.ids(t for t, _, _ in tokens), spans, first_answer(q, spans)))
        return encoded
