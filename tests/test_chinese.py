"""Chinese text on both vocabulary paths: WordPiece (``tokenizers``) against transformers'
``BertTokenizerFast``, and the book-vocabulary path's ``basic`` against BERT's
``BasicTokenizer`` (fixture: tests/fixtures/make_zh_fixture.py)."""
import json
import os

import numpy as onp
import pytest

from gluon_bertft.data.tokenize import basic, basic_spans, build_vocab, cjk_share, whitespace
from gluon_bertft.data.wordpiece import WordPiece
from gluon_bertft.data.words import WordTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'fixtures', 'zh_ids.json'), encoding='utf-8') as _f:
    FIXTURE = json.load(_f)


def chinese_folder(path, tokenize_chinese_chars=True):
    """A Hugging Face tokenizer folder with the fixture's tiny Chinese vocabulary."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'vocab.txt'), 'w', encoding='utf-8') as f:
        f.writelines(t + '\n' for t in FIXTURE['vocab'])
    with open(os.path.join(path, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(do_lower_case=True, tokenize_chinese_chars=tokenize_chinese_chars), f)
    return str(path)


@pytest.mark.parametrize('chinese', [True, False])
def test_wordpiece_splits_chinese_as_bert_tokenizer_fast(tmp_path, chinese):
    wp = WordPiece.from_folder(chinese_folder(tmp_path, chinese))
    expected = FIXTURE['wordpiece'][str(chinese).lower()]
    tokens, _, valid_lens = wp.encode_texts([(t,) for t in FIXTURE['singles']], 64)
    for row, ids in enumerate(expected['singles']):
        assert valid_lens[row] == len(ids) and tokens[row, :len(ids)].tolist() == ids
    tokens, segments, valid_lens = wp.encode_texts([tuple(p) for p in FIXTURE['pairs']], 64)
    for row, case in enumerate(expected['pairs']):
        n = len(case['input_ids'])
        assert tokens[row, :n].tolist() == case['input_ids']
        assert segments[row, :n].tolist() == case['token_type_ids'] and valid_lens[row] == n
    tokens, _, _, word_starts, num_kept = wp.encode_words(FIXTURE['words'], 64)
    for row, case in enumerate(expected['words']):
        ids, word_ids = case['input_ids'], case['word_ids']
        assert tokens[row, :len(ids)].tolist() == ids
        firsts = [word_ids.index(w) for w in range(len(FIXTURE['words'][row]))]
        assert word_starts[row].tolist() == firsts and num_kept[row] == len(firsts)


def test_the_chinese_split_is_what_the_fixture_checks():
    """With tokenize_chinese_chars every ideograph is a token ([UNK] when unknown); without
    it an unsegmented run is one word, which this vocabulary does not hold."""
    ids = FIXTURE['wordpiece']['true']['singles'][0]
    assert len(ids) == 2 + len('剧情无聊，浪费时间。') and 1 not in ids  # 1: [UNK]
    assert FIXTURE['wordpiece']['false']['singles'][0] == [2, 1, 5, 1, 6, 3]


def test_basic_splits_chinese_as_bert_basic_tokenizer():
    for text, tokens in FIXTURE['basic'].items():
        assert basic(text) == tokens, text
        assert [t for t, _, _ in basic_spans(text)] == tokens
        assert all(text[s:e].lower() == t for t, s, e in basic_spans(text))


def test_basic_leaves_text_without_cjk_as_it_was():
    text = "Don't stop: 3.14 is pi, café-naïve ok!"
    assert basic(text) == ['don', "'", 't', 'stop', ':', '3', '.', '14', 'is', 'pi', ',',
                           'café', '-', 'naïve', 'ok', '!']
    assert whitespace('剧情无聊，浪费时间。') == ['剧情无聊，浪费时间。']  # the book's: one token


def test_the_book_vocabulary_path_embeds_characters():
    vocab = build_vocab([' '.join(basic('剧情无聊，浪费时间。'))])
    tok = WordTokenizer(vocab, 'basic')
    tokens, _, valid_lens = tok.encode_texts([('剧情很无聊',)], 16)
    unk = vocab.token_to_idx['<unk>']
    assert valid_lens[0] == 7 and tokens[0, 1:6].tolist() == [
        vocab['剧'], vocab['情'], unk, vocab['无'], vocab['聊']]


def test_cjk_share():
    assert cjk_share([]) == 0.0 and cjk_share(['  ']) == 0.0
    assert cjk_share(['剧情 ab']) == 0.5 and cjk_share(['中文', 'x']) == pytest.approx(2 / 3)
    assert onp.isclose(cjk_share(['こんにちは']), 0.0)  # kana are not CJK ideographs
