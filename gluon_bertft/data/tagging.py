"""Token tagging inputs: words with per-word tags -> BERT arrays with per-token labels.

Each word is tokenized on its own; its first piece carries the word's tag and every other
piece, ``<cls>``, ``<sep>`` and ``<pad>`` carry -1, which the loss and the metric ignore.
Words past ``max_len - 2`` pieces are cut off (and predicted ``O``); the first sentence cut
is named with its file and line. A tag the model does not know is an error naming its line,
or, given ``unknown`` (plain tags, test data), that id: one past the last tag, which no
prediction equals, so the word counts as wrong.
"""
import numpy as onp

from ..common.errors import DataError, cut, shorten
from .tokenize import get_tokenizer

IGNORE = -1


def tag_id(sent, j, tag_ids, unknown=None):
    """The id of word ``j``'s tag (IGNORE for an untagged sentence); a tag not in ``tag_ids``
    gets ``unknown``, or without it raises ``DataError`` naming its line."""
    if sent.tags is None:
        return IGNORE
    tag = sent.tags[j]
    if tag not in tag_ids and unknown is not None:
        return unknown
    if tag not in tag_ids:
        raise DataError(f'{sent.path}:{sent.line + j}: tag {shorten(tag)} is not one the model '
                        f'knows ({cut(", ".join(tag_ids))})')
    return tag_ids[tag]


def warn_cut(cut, max_len, log):
    """Say how many sentences ``max_len`` cut, naming the first: ``cut`` = [(sentence, kept)]."""
    if cut:
        sent, kept = cut[0]
        log(f'warning: {len(cut)} sentence(s) longer than max_len={max_len} tokens were cut, '
            f'e.g. {sent.path}:{sent.line} ({len(sent.words)} words, {kept} kept); the words '
            f'cut off are predicted O')


class TaggingDataset:
    """``all_token_ids``, ``all_segments``, ``valid_lens``, ``labels`` (``(n, max_len)``, -1 for
    ignored positions) and ``word_starts[i]``: the position of each kept word's first piece.
    ``unknown_ok``: a tag outside ``tag_names`` gets the id ``len(tag_names)`` (counted wrong)
    instead of raising ``DataError``."""

    def __init__(self, sentences, vocab, tag_names, max_len, tokenizer='whitespace', log=print,
                 unknown_ok=False):
        if max_len < 3:
            raise ValueError(f'max_len={max_len}: needs <cls>, one word and <sep>')
        tokenize = get_tokenizer(tokenizer)
        tag_ids = {t: i for i, t in enumerate(tag_names)}
        unknown = len(tag_names) if unknown_ok else None
        idx, unk = vocab.token_to_idx, vocab.token_to_idx['<unk>']
        n = len(sentences)
        self.all_token_ids = onp.full((n, max_len), idx['<pad>'], dtype=onp.int32)
        self.all_segments = onp.zeros((n, max_len), dtype=onp.int32)
        self.labels = onp.full((n, max_len), IGNORE, dtype=onp.float32)
        self.valid_lens = onp.zeros(n, dtype=onp.float32)
        self.word_starts, cut = [], []
        for i, sent in enumerate(sentences):
            ids, labels, starts = [idx['<cls>']], [IGNORE], []
            for j, word in enumerate(sent.words):
                pieces = tokenize(word)
                if len(ids) + len(pieces) > max_len - 1:
                    cut.append((sent, j))
                    break
                starts.append(len(ids))
                labels += [tag_id(sent, j, tag_ids, unknown)] + [IGNORE] * (len(pieces) - 1)
                ids += [idx.get(p, unk) for p in pieces]
            ids.append(idx['<sep>'])
            labels.append(IGNORE)
            self.all_token_ids[i, :len(ids)] = ids
            self.labels[i, :len(labels)] = labels
            self.valid_lens[i] = len(ids)
            self.word_starts.append(onp.array(starts, dtype=onp.int64))
        warn_cut(cut, max_len, log)

    def __len__(self):
        return len(self.valid_lens)
