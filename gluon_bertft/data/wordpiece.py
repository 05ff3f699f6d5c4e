"""WordPiece inputs (Hugging Face BERT checkpoints) through the ``tokenizers`` library.

The arrays are the ones the book's datasets produce (int32 ``(n, max_len)`` token ids padded
on the right with the pad id, int32 segments, float32 ``(n,)`` valid lengths), with the ids of
transformers' ``BertTokenizerFast(a, b, truncation=True, max_length=max_len)``. The library's
own padding and truncation are switched off; both are done here, so they are exact:

- a single text is ``[CLS] a [SEP]``, cut to ``max_len - 2`` pieces;
- a pair is ``[CLS] a [SEP] b [SEP]``, segment 1 on ``b`` and its ``[SEP]``, cut to
  ``max_len - 3`` pieces by ``longest_first``: the shorter text is kept whole if it fits in
  half the room, else each gets half and the longer one the odd piece; on a tie the *second*
  keeps the odd piece (the book's ``snli.truncated_lengths`` gives it to the first).

Offsets are character offsets in the original text (accents stripped and case folded by the
normalizer still map back to the original characters), so QA answers decode to the passage's
own text through ``qa.span_text``.
"""
import json
import os

import numpy as onp
from tokenizers import (BertWordPieceTokenizer, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors)

from ..common.errors import PretrainedError
from ..common.files import check_regular
from ..common.storage import read_json
from .qa import first_answer
from .snli import truncated_lengths
from .tokenize import word_input_arrays

SPECIALS = {'cls_token': '[CLS]', 'sep_token': '[SEP]', 'pad_token': '[PAD]',
            'unk_token': '[UNK]', 'mask_token': '[MASK]'}


def _read_json(path):
    """The JSON object in ``path`` (``{}`` if there is no such file)."""
    if not os.path.exists(path):
        return {}
    value = read_json(path)
    if not isinstance(value, dict):
        raise PretrainedError(f'{path}: expected a JSON object, got {json.dumps(value)[:40]}')
    return value


def read_text(path):
    """The UTF-8 text of ``path`` without a leading byte-order mark."""
    with open(path, encoding='utf-8-sig') as f:
        return f.read()


def read_vocab(path):
    """``{token: id}`` of a ``vocab.txt`` (one token a line, ids from 0; a byte-order mark is
    allowed, as transformers' reader allows it)."""
    with open(path, encoding='utf-8-sig') as f:  # lines as transformers' load_vocab reads them
        return {line.rstrip('\n'): i for i, line in enumerate(f.readlines())}


def check_flags(config, where):
    """``PretrainedError`` naming ``where`` and the field unless the tokenizer flags are JSON
    booleans (``"false"`` is a string, which transformers would also read as true)."""
    for key in ('do_lower_case', 'tokenize_chinese_chars', 'strip_accents'):
        value = config.get(key)
        if key in config and not (isinstance(value, bool) or (key == 'strip_accents' and value is None)):
            raise PretrainedError(f'{where}: "{key}" is {json.dumps(value)[:40]}; expected true or '
                                  'false (a JSON boolean, not a string)')


def _token(value):
    """A special token's text from a config value: a string or ``{"content": ...}``."""
    return value.get('content') if isinstance(value, dict) else value


class WordPiece:
    """A BERT WordPiece tokenizer (a ``tokenizers.Tokenizer``) with a d2l-Vocab-like face.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        Its model must be WordPiece; it is copied. As transformers' ``BertTokenizer`` does,
        the normalizer, pre-tokenizer, post-processor and decoder are set to BERT's from the
        flags below, and padding and truncation are switched off.
    lowercase, strip_accents, tokenize_chinese_chars : bool, bool or None, bool
        ``BertNormalizer`` flags (``strip_accents=None`` follows ``lowercase``).
    special_tokens : dict, optional
        ``{'cls_token': '[CLS]', ...}`` overriding :data:`SPECIALS`.

    Attributes: ``tokenizer``, ``vocab_size``, ``idx_to_token`` (list), ``token_to_idx``
    (dict), the flags, ``special_tokens``, ``cls_id``, ``sep_id``, ``pad_id``, ``unk_id``, ``mask_id``.
    """

    def __init__(self, tokenizer, lowercase=True, strip_accents=None, tokenize_chinese_chars=True,
                 special_tokens=None):
        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        if not isinstance(tokenizer.model, models.WordPiece):
            raise ValueError(f'not a WordPiece tokenizer (its model is '
                             f'{type(tokenizer.model).__name__})')
        self.lowercase, self.strip_accents = bool(lowercase), strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.special_tokens = dict(SPECIALS, **(special_tokens or {}))
        self.token_to_idx = tokenizer.get_vocab(with_added_tokens=True)
        self.idx_to_token = [None] * len(self.token_to_idx)
        for token, i in self.token_to_idx.items():
            if i >= len(self.idx_to_token):
                raise ValueError(f'token ids are not 0..{len(self.idx_to_token) - 1}: '
                                 f'{token!r} has id {i}')
            self.idx_to_token[i] = token
        for name, token in self.special_tokens.items():
            if token not in self.token_to_idx:
                raise ValueError(f'the vocabulary has no {name} {token!r}')
            setattr(self, name[:-len('_token')] + '_id', self.token_to_idx[token])
        cls, sep = self.special_tokens['cls_token'], self.special_tokens['sep_token']
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=self.tokenize_chinese_chars,
            strip_accents=strip_accents, lowercase=self.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix='##')
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f'{cls}:0 $A:0 {sep}:0', pair=f'{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1',
            special_tokens=[(cls, self.cls_id), (sep, self.sep_id)])
        tokenizer.add_special_tokens(list(self.special_tokens.values()))  # found in raw text
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.vocab_size = len(self.idx_to_token)

    @classmethod
    def from_folder(cls, path):
        """The tokenizer of a Hugging Face model folder, read as ``BertTokenizerFast`` reads it.

        ``tokenizer.json`` if present, else ``vocab.txt``; ``tokenizer_config.json`` gives
        ``do_lower_case`` (default True, and it wins over ``tokenizer.json``'s normalizer, as in
        transformers), ``strip_accents``, ``tokenize_chinese_chars`` and the special tokens
        (also read from ``special_tokens_map.json``).
        """
        config = _read_json(os.path.join(path, 'tokenizer_config.json'))
        check_flags(config, os.path.join(path, 'tokenizer_config.json'))
        special = {**_read_json(os.path.join(path, 'special_tokens_map.json')), **config}
        special = {k: _token(special[k]) for k in SPECIALS if _token(special.get(k))}
        flags = dict(lowercase=config.get('do_lower_case', True),
                     strip_accents=config.get('strip_accents'),
                     tokenize_chinese_chars=config.get('tokenize_chinese_chars', True))
        file = next((os.path.join(path, name) for name in ('tokenizer.json', 'vocab.txt')
                     if os.path.exists(os.path.join(path, name))), None)
        if file is None:
            raise FileNotFoundError(f'{path}: no tokenizer.json or vocab.txt')
        check_regular(file, PretrainedError)
        try:
            if file.endswith('.json'):  # read here: a UTF-8 byte-order mark is allowed
                tokenizer = Tokenizer.from_str(read_text(file))
            else:
                tokenizer = Tokenizer.from_str(BertWordPieceTokenizer(
                    read_vocab(file), lowercase=flags['lowercase'],
                    strip_accents=flags['strip_accents'],
                    handle_chinese_chars=flags['tokenize_chinese_chars'],
                    **dict(SPECIALS, **special)).to_str())
            return cls(tokenizer, special_tokens=special, **flags)
        except Exception as e:  # the Rust library raises plain Exception for a broken file
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise PretrainedError(f'{file}: not a WordPiece tokenizer that can be read ({reason})') from None

    def save(self, folder, model_max_length=None):
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``vocab.txt`` to ``folder``
        (which :meth:`from_folder` and transformers both read back to the same ids).

        With ``model_max_length`` (the model's positions), as ``save_pretrained`` does:
        ``tokenizer_config.json`` holds it (transformers' tokenizer then truncates there) and
        ``special_tokens_map.json`` the special tokens.
        """
        os.makedirs(folder, exist_ok=True)
        self.tokenizer.save(os.path.join(folder, 'tokenizer.json'))
        config = dict(self.special_tokens, do_lower_case=self.lowercase,
                      strip_accents=self.strip_accents,
                      tokenize_chinese_chars=self.tokenize_chinese_chars,
                      tokenizer_class='BertTokenizer')
        if model_max_length is not None:
            config['model_max_length'] = model_max_length
            with open(os.path.join(folder, 'special_tokens_map.json'), 'w', encoding='utf-8') as f:
                json.dump(self.special_tokens, f, indent=2, ensure_ascii=False)
        with open(os.path.join(folder, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
        with open(os.path.join(folder, 'vocab.txt'), 'w', encoding='utf-8') as f:
            f.writelines(token + '\n' for token in self.idx_to_token)

    def __len__(self):
        return self.vocab_size

    def __getitem__(self, tokens):
        """Id of a token (``unk_id`` if unknown), or the list of ids of a list or tuple."""
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, self.unk_id)
        return [self[t] for t in tokens]

    def to_tokens(self, indices):
        """Token of an id, or the list of tokens of a sequence of ids."""
        if hasattr(indices, '__len__'):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]

    def tokenize(self, text):
        """The WordPiece tokens of ``text``, without ``[CLS]``/``[SEP]``."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode_batch(self, items, **kwargs):
        """``tokenizers.Encoding`` s of ``items`` without special tokens (``ids``, ``offsets``,
        ``word_ids``; keyword arguments go to ``Tokenizer.encode_batch``)."""
        return self.tokenizer.encode_batch(items, add_special_tokens=False, **kwargs)

    def token_spans(self, texts):
        """Per text ``[(id, start, end)]`` of its WordPiece pieces (character offsets)."""
        return [[(i, s, e) for i, (s, e) in zip(enc.ids, enc.offsets)]
                for enc in self.encode_batch(list(texts))]

    # the tokenizer protocol (data/words.py has the book's vocabulary behind it)
    @property
    def specials(self):
        """``(cls, sep, pad)`` ids."""
        return self.cls_id, self.sep_id, self.pad_id

    def encode_texts(self, texts, max_len, truncation='longest_first'):
        """Single texts or pairs -> ``(tokens, segments, valid_lens)``: :func:`encode_texts`."""
        return encode_texts(self, texts, max_len, truncation)

    def encode_words(self, sentences_words, max_len):
        """Pre-tokenized sentences -> ``(tokens, segments, valid_lens, word_starts,
        num_kept)``: :func:`encode_words`."""
        return encode_words(self, sentences_words, max_len)

    def encode_qa(self, questions, max_query_len):
        """Per question ``(question ids, passage ids, passage piece spans, first answer's
        piece range)``; offsets are characters of the original passage."""
        contexts = list(dict.fromkeys(q.context for q in questions))  # each passage once
        passages = dict(zip(contexts, self.encode_batch(contexts)))
        queries = self.encode_batch([q.question for q in questions])
        encoded = []
        for q, query in zip(questions, queries):
            passage = passages[q.context]
            spans = [tuple(o) for o in passage.offsets]
            encoded.append((query.ids[:max_query_len], passage.ids, spans, first_answer(q, spans)))
        return encoded


def longest_first_lengths(len_a, len_b, budget):
    """Lengths that ``tokenizers``' ``longest_first`` truncation (transformers' default) keeps.

    Parameters
    ----------
    len_a, len_b : array-like of int, shape (n,)
        Piece counts of the first and second texts.
    budget : int
        Room for both (``max_len - 3``).

    Returns
    -------
    a, b : int64 arrays, shape (n,)
        The shorter text stays whole if it takes at most half the budget, else each side gets
        ``budget // 2`` and the longer one the odd piece; on a tie the second gets it.
    """
    len_a, len_b = onp.asarray(len_a, dtype=onp.int64), onp.asarray(len_b, dtype=onp.int64)
    over = len_a + len_b > budget
    a_short = len_a <= len_b  # no swap on ties: the first is "the shorter"
    short = onp.minimum(len_a, len_b)
    new_short = onp.where(2 * short <= budget, short, budget // 2)
    new_long = budget - new_short
    a = onp.where(over, onp.where(a_short, new_short, new_long), len_a)
    b = onp.where(over, onp.where(a_short, new_long, new_short), len_b)
    return a, b


TRUNCATIONS = {'longest_first': longest_first_lengths, 'book': truncated_lengths}


def encode_texts(wp, texts, max_len, truncation='longest_first'):
    """BERT inputs of single texts or pairs of raw strings.

    Parameters
    ----------
    wp : WordPiece
    texts : list of 1-tuples or 2-tuples of str
        All single texts or all pairs (e.g. ``(premise, hypothesis)`` for SNLI).
    max_len : int
    truncation : {'longest_first', 'book'}
        Pair truncation: transformers' (the default), or the book's tie rule
        (``snli.truncated_lengths``: the first text keeps the odd piece).

    Returns
    -------
    tokens, segments : int32 arrays, shape (n, max_len)
    valid_lens : float32 array, shape (n,)
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f'truncation={truncation!r}: choose from {", ".join(TRUNCATIONS)}')
    arity = {len(t) for t in texts}
    if len(arity) > 1 or arity - {1, 2}:
        raise ValueError(f'texts must be all 1-tuples or all 2-tuples, got sizes {sorted(arity)}')
    pair = arity == {2}
    if max_len < 2 + pair:
        raise ValueError(f'max_len={max_len}: needs at least {2 + pair} positions for the '
                         f'special tokens')
    n = len(texts)
    first = [e.ids for e in wp.encode_batch([t[0] for t in texts])]
    second = [e.ids for e in wp.encode_batch([t[1] for t in texts])] if pair else [[]] * n
    len_a = onp.array([len(x) for x in first], dtype=onp.int64)
    len_b = onp.array([len(x) for x in second], dtype=onp.int64)
    if pair:
        a, b = TRUNCATIONS[truncation](len_a, len_b, max_len - 3)
    else:
        a, b = onp.minimum(len_a, max_len - 2), onp.zeros(n, dtype=onp.int64)
    tokens = onp.full((n, max_len), wp.pad_id, dtype=onp.int32)
    tokens[:, 0] = wp.cls_id
    for i in range(n):
        tokens[i, 1:1 + a[i]] = first[i][:a[i]]
        tokens[i, 1 + a[i]] = wp.sep_id
        if pair:
            tokens[i, 2 + a[i]:2 + a[i] + b[i]] = second[i][:b[i]]
            tokens[i, 2 + a[i] + b[i]] = wp.sep_id
    valid_lens = a + b + 2 + pair
    positions = onp.arange(max_len)
    segments = onp.zeros((n, max_len), dtype=onp.int32)
    if pair:
        segments[(positions >= (a + 2)[:, None]) & (positions < valid_lens[:, None])] = 1
    return tokens, segments, valid_lens.astype(onp.float32)


def encode_words(wp, sentences_words, max_len):
    """BERT inputs of pre-tokenized sentences (CoNLL words), with where each word starts.

    Each word is split by BERT's pre-tokenizer and WordPiece (``is_pretokenized=True``); a word
    that normalizes to nothing (e.g. a zero-width space) gets one ``[UNK]`` so that every word
    has a position. Words are kept while their pieces fit in ``max_len - 2``; the rest are cut
    whole (a word's pieces are never split), as in ``tagging.TaggingDataset``.

    Returns
    -------
    tokens, segments : int32 arrays, shape (n, max_len)
        ``[CLS] pieces [SEP] [PAD]...``; segments all 0.
    valid_lens : float32 array, shape (n,)
    word_starts : list of n int64 arrays, shape (num_kept[i],)
        Position of each kept word's first piece.
    num_kept : int64 array, shape (n,)
    """
    tokens, valid_lens, num_kept = word_input_arrays(len(sentences_words), max_len, wp.pad_id)
    word_starts = []
    encodings = wp.encode_batch([list(words) for words in sentences_words], is_pretokenized=True)
    for i, (words, enc) in enumerate(zip(sentences_words, encodings)):
        ids = onp.array(enc.ids, dtype=onp.int64)
        word_ids = onp.array(enc.word_ids, dtype=onp.int64)
        counts = onp.bincount(word_ids, minlength=len(words))[:len(words)]
        begins = onp.cumsum(counts) - counts  # first piece of each word in ``ids``
        sizes = onp.maximum(counts, 1)  # a word with no piece becomes [UNK]
        ends = onp.cumsum(sizes)
        k = int(onp.searchsorted(ends, max_len - 2, side='right'))
        row = [wp.cls_id]
        for j in range(k):
            row.extend(ids[begins[j]:begins[j] + counts[j]] if counts[j] else [wp.unk_id])
        row.append(wp.sep_id)
        tokens[i, :len(row)] = row
        valid_lens[i] = len(row)
        num_kept[i] = k
        word_starts.append((1 + ends[:k] - sizes[:k]).astype(onp.int64))
    return tokens, onp.zeros_like(tokens), valid_lens, word_starts, num_kept
