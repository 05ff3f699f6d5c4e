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
    """``all_token_ids``, ``all_segments``, ``valid_lens``, ``labels`` (float32 ``(n, max_len)``:
    a word's tag id on its first token, -1 on other tokens, specials and padding) and
    ``word_starts[i]``: the position of each kept word's first token.

    ``sentences`` are ``conll.Sentence`` s encoded by ``tokenizer`` (the protocol of
    :mod:`.words`). The first sentence cut is named by file and line through ``log``;
    ``unknown_ok``: a tag outside ``tag_names`` gets the id ``len(tag_names)`` (counted wrong)
    instead of raising ``DataError``.
    """

    def __init__(self, sentences, tokenizer, tag_names, max_len, log=print, unknown_ok=False):
        tag_ids = {t: i for i, t in enumerate(tag_names)}
        unknown = len(tag_names) if unknown_ok else None
        (self.all_token_ids, self.all_segments, self.valid_lens, self.word_starts,
         num_kept) = tokenizer.encode_words([s.words for s in sentences], max_len)
        self.labels = onp.full(self.all_token_ids.shape, IGNORE, dtype=onp.float32)
        cut = []
        for i, (sent, starts) in enumerate(zip(sentences, self.word_starts)):
            if num_kept[i] < len(sent.words):
                cut.append((sent, int(num_kept[i])))
            for j, position in enumerate(starts):
                self.labels[i, position] = tag_id(sent, j, tag_ids, unknown)
        warn_cut(cut, max_len, log)

    def __len__(self):
        return len(self.valid_lens)
