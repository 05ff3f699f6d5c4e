"""Task encoders and decoding, and every task end to end through the CLI on real data.

The CLI runs train briefly from random initialization (seconds, not minutes); classification,
tagging and QA must beat their trivial baseline on held-out real data, and ``evaluate`` on the
same file must give the metric that ``finetune`` reported.
"""
import json
import re

import numpy as onp
import pytest
from conftest import shared_file
from d2l import mxnet as d2l

from gluon_bertft import cli, tasks
from gluon_bertft.common.errors import DataError
from gluon_bertft.data import conll, qa, squad
from gluon_bertft.data.tagging import IGNORE, TaggingDataset
from gluon_bertft.data.tokenize import RESERVED_TOKENS, basic
from gluon_bertft.data.words import WordTokenizer
from gluon_bertft.models import pretrained


def vocab_of(texts):
    return d2l.Vocab([t.split() for t in texts], reserved_tokens=RESERVED_TOKENS)


# --- tagging: first pieces, cut sentences, unknown tags ---

def test_first_piece_carries_the_tag_with_a_splitting_tokenizer():
    sentences = conll.read_conll(shared_file('conll2003', 'eng.testa'))
    sent = next(s for s in sentences if 'U.S.' in s.words)
    tags = conll.tag_names(sentences)
    data = TaggingDataset([sent], WordTokenizer(vocab_of([' '.join(basic(w)) for w in sent.words]),
                                                'basic'), tags, 128)
    labels, starts = data.labels[0], data.word_starts[0]
    assert len(starts) == len(sent.words)
    pieces = [basic(w) for w in sent.words]
    assert [len(p) for p in pieces][sent.words.index('U.S.')] == 4  # u . s .
    for word_pieces, start, tag in zip(pieces, starts, sent.tags):
        assert labels[start] == tags.index(tag)
        assert (labels[start + 1:start + len(word_pieces)] == IGNORE).all()
    n = int(data.valid_lens[0])
    assert n == 2 + sum(len(p) for p in pieces)
    assert labels[0] == labels[n - 1] == IGNORE and (labels[n:] == IGNORE).all()  # <cls> <sep> <pad>


def test_long_sentence_is_cut_named_and_its_tail_predicted_o(tmp_path):
    path = tmp_path / 'long.conll'
    path.write_text('-DOCSTART- -X- O O\n\nA O\nshort B-PER\n\n' +
                    ''.join(f'w{i} {"B-LOC" if i == 9 else "O"}\n' for i in range(10)))
    sentences = conll.read_conll(str(path))
    task = tasks.make_task('tag', max_len=8)
    task.fit(sentences)
    logged = []
    data = task.encode(sentences, vocab_of(['a short'] + [f'w{i}' for i in range(10)]), log=logged.append)
    assert re.match(r'warning: 1 sentence\(s\) longer than max_len=8 tokens were cut, e\.g\. '
                    r'.*long\.conll:6 \(10 words, 6 kept\)', logged[0])
    outputs = [onp.eye(len(task.config['labels']))[onp.zeros(8, dtype=int)]] * 2  # all 'O'
    assert task.tags(outputs, sentences, data)[1] == ['O'] * 10
    assert task.score(outputs, sentences, data)['recall'] == 0.0  # the cut LOC counts as missed


def test_unknown_tag_at_evaluation_names_the_line(tmp_path):
    path = tmp_path / 'dev.conll'
    path.write_text('EU B-ORG\nrejects O\n\nParis B-GPE\n')
    task = tasks.make_task('tag')
    task.config['labels'] = ['O', 'B-ORG', 'I-ORG']
    with pytest.raises(DataError, match=r"dev\.conll:4: tag 'B-GPE' is not one the model knows"):
        task.encode(conll.read_conll(str(path)), vocab_of(['eu']))


# --- QA: windows and decoding ---

def test_windows_keep_every_answer_of_long_passages():
    questions = squad.read_squad(shared_file('squad', 'train-v1.1.subset.json'))[:300]
    vocab = vocab_of([' '.join(basic(q.question + ' ' + q.context)) for q in questions])
    logged = []
    data = qa.QADataset(questions, WordTokenizer(vocab), max_len=64, stride=16, train=True,
                        log=logged.append)
    assert not logged  # no answer lost: each lies whole in some window
    assert set(data.window_question) == set(range(300))
    assert data.window_start.max() > 100  # answers far past the first window are found
    for w in range(len(data)):
        q = questions[data.window_question[w]]
        first, last = (int(l[w]) - data.window_offset[w] + data.window_start[w] for l in data.labels)
        text = qa.span_text(q.context, data.spans[data.window_question[w]], first, last)
        assert text.lower().strip() == q.answers[0].text.lower().strip() or \
            q.answers[0].text in text  # an answer ending inside a token widens to the token
    segments, n = data.all_segments[0], int(data.valid_lens[0])
    assert segments[0] == 0 and segments[data.window_offset[0]] == 1 and segments[n - 1] == 1


def test_best_span_over_windows_respects_order_and_length():
    data = qa.QADataset([squad.Question('q', 'who ?', 'a b c d e f g h', [], '')],
                        WordTokenizer(vocab_of(['who ? a b c d e f g h'])), max_len=9, stride=2)
    # <cls> who ? <sep> + 4 passage tokens + <sep>: windows over tokens 0-3, 2-5, 4-7
    assert list(data.window_start) == [0, 2, 4] and list(data.window_offset) == [4, 4, 4]
    starts, ends = onp.full((3, 9), -10.0), onp.full((3, 9), -10.0)
    starts[0, 5], ends[0, 4] = 9, 9   # window 0: end before start, not a span
    starts[1, 4], ends[1, 6] = 3, 3   # window 1: tokens 2..4, 'c d e', score 6
    starts[2, 4], ends[2, 5] = 1, 1   # window 2: tokens 4..5, 'e f', score 2
    outputs = list(zip(starts, ends))
    assert qa.best_spans(data, outputs, 1, max_answer_len=3)[0] == (6.0, 2, 4, 1)
    assert qa.span_text('a b c d e f g h', data.spans[0], 2, 4) == 'c d e'
    assert qa.best_spans(data, outputs, 1, max_answer_len=2)[0] == (2.0, 4, 5, 2)


# --- the CLI, task by task ---

def lines_of(path, start, stop, encoding='utf-8'):
    with open(path, encoding=encoding) as f:
        return f.readlines()[start:stop]


def squad_subset(src, dst, num_questions):
    """The first paragraphs of a SQuAD file holding at least ``num_questions`` questions."""
    with open(src, encoding='utf-8') as f:
        articles = json.load(f)['data']
    paragraphs, count = [], 0
    for para in (p for a in articles for p in a['paragraphs']):
        if count >= num_questions:
            break
        paragraphs.append(para)
        count += len(para['qas'])
    with open(dst, 'w', encoding='utf-8') as f:
        json.dump({'version': '1.1', 'data': [{'title': 'subset', 'paragraphs': paragraphs}]}, f)


def conll_subset(src, dst, num_lines):
    """The first sentences of a CoNLL file, cut at a blank line."""
    lines = lines_of(src, 0, num_lines)
    while lines[-1].strip():
        lines.pop()
    open(dst, 'w').writelines(lines)


def spam_files(tmp):
    src = shared_file('sms_spam', 'SMSSpamCollection')
    open(tmp / 'train.tsv', 'w').writelines(lines_of(src, 0, 3000))
    open(tmp / 'test.tsv', 'w').writelines(lines_of(src, 5000, 5574))
    return ['--text-columns', '1', '--label-column', '0', '--tokenizer', 'basic',
            '--epochs', '3', '--lr', '3e-4']


def snli_files(tmp):
    src = shared_file('snli', 'snli_1.0_dev.jsonl')
    open(tmp / 'train.jsonl', 'w').writelines(lines_of(src, 0, 300))
    open(tmp / 'test.jsonl', 'w').writelines(lines_of(src, 9000, 9100))
    return ['--label-column', 'gold_label']


def sst2_files(tmp):
    src = shared_file('sst2', 'train.tsv')
    open(tmp / 'train.tsv', 'w').writelines(lines_of(src, 0, 301))
    open(tmp / 'test.tsv', 'w').writelines(lines_of(src, 0, 1) + lines_of(src, 1000, 1100))
    return ['--text-columns', 'sentence', '--label-column', 'label']


def conll_files(tmp):
    conll_subset(shared_file('conll2003', 'eng.train'), tmp / 'train.conll', 23000)  # ~1,500 sentences
    conll_subset(shared_file('conll2003', 'eng.testa'), tmp / 'test.conll', 4000)
    return ['--epochs', '3', '--lr', '1e-3']


def squad_files(tmp):
    squad_subset(shared_file('squad', 'train-v1.1.subset.json'), tmp / 'train.json', 400)
    squad_subset(shared_file('squad', 'dev-v1.1.shared.json'), tmp / 'test.json', 150)
    return ['--epochs', '2', '--lr', '3e-3']


# task: (file maker, extension, key metric and the margin by which a short run must beat the
# trivial baseline (QA: random weights score about 3 F1), predict arguments, expected output)
CASES = {
    'classify': (spam_files, 'tsv', ('f1[spam]', 0.5),
                 ['--text', 'WINNER!! You have won a free prize, call 09061701461 now'],
                 r'^(ham|spam) [01]\.\d\d \((ham|spam) [01]\.\d\d\)$'),
    'pair-classify': (snli_files, 'jsonl', None, ['--text', 'A man plays .', '--text-b', 'A man sleeps .'],
                      r'^(entailment|contradiction|neutral) [01]\.\d\d \((entailment|contradiction|neutral) '
                      r'[01]\.\d\d, (entailment|contradiction|neutral) [01]\.\d\d\)$'),
    'regress': (sst2_files, 'tsv', None, ['--text', 'a gorgeous film'], r'^-?\d+\.\d{3}$'),
    'tag': (conll_files, 'conll', ('f1', 0.1), ['--text', 'Peter Blackburn flew to London'],
            r'^Peter/\S+ Blackburn/\S+ flew/\S+ to/\S+ London/\S+$'),  # word/tag pairs
    'qa': (squad_files, 'json', ('f1', 4.0), ['--question', 'Who won?', '--passage', 'The Broncos won it.'],
           r'^\S'),
}
# a small BERT, so that each run takes seconds on a CPU
SMALL = dict(num_hiddens=64, ffn_num_hiddens=128, num_heads=2, num_blks=2, max_len=128)


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(CASES))
def test_cli_finetune_evaluate_predict(task, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(pretrained.ALL_PRESETS, 'test-small', SMALL)
    make_files, ext, key, predict_args, expected = CASES[task]
    options = make_files(tmp_path)
    out = tmp_path / 'run'
    train, test = str(tmp_path / f'train.{ext}'), str(tmp_path / f'test.{ext}')
    assert cli.main(['finetune', '--task', task, '--train', train, '--test', test, '--pretrained',
                     'random', '--preset', 'test-small', '--batch-size', '32',
                     '--devices', 'cpu:0,cpu:1', '--out', str(out), *options]) == 0
    printed = capsys.readouterr().out
    assert re.search(r'^epoch \d+/\d+: loss [\d.]+, train acc [\d.]+, test acc [\d.]+$', printed, re.M)
    result = json.loads((out / 'result.json').read_text())
    if key:
        metric, margin = key
        assert result['test'][metric] > result['baseline'][metric] + margin, result
    assert cli.main(['evaluate', '--model', str(out / 'model'), '--data', test, '--devices', 'cpu']) == 0
    evaluated = dict(re.findall(r'(\S+) (-?[\d.]+)', capsys.readouterr().out))
    for name, value in result['test'].items():
        assert float(evaluated[name]) == pytest.approx(value, abs=1e-3)
    assert cli.main(['predict', '--model', str(out / 'model'), '--devices', 'cpu', *predict_args]) == 0
    assert re.match(expected, capsys.readouterr().out.strip())


@pytest.mark.parametrize('task, text, args, message', [
    ('classify', 'ham\tfine\n', ['--label-column', '2'], r'train\.txt:1: 2 column\(s\), but column 2'),
    ('classify', 'ham\tfine\nspam\tcaf\xe9 \u00a3100\n', ['--encoding', 'ascii'],
     r'train\.txt:2: byte 0xc3 at column 9 is not valid ascii'),
    ('tag', 'EU B-ORG\nrejects O\n\nParis B-LOC\n', ['--max-len', '2', '--test-fraction', '0.5'],
     r'--max-len 2: --task tag needs at least 3'),
    ('tag', 'EU B-ORG\nrejects\n', [], r'train\.txt:2: one column'),
    ('qa', '{"data": [{"paragraphs": [{"qas": [{"id": "x", "question": "Why?"}]}]}]}', [],
     r'train\.txt:1 \(question x, .*\): the question has no passage'),
])
def test_cli_bad_input_is_one_clear_line(task, text, args, message, tmp_path, capsys):
    train = tmp_path / 'train.txt'
    train.write_bytes(text.encode('utf-8'))
    options = ['--text-columns', '1', '--label-column', '0'] if task == 'classify' else []
    code = cli.main(['finetune', '--task', task, '--train', str(train), '--pretrained', 'random',
                     '--devices', 'cpu', '--out', str(tmp_path / 'o'), *options, *args])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / 'o').exists()


def test_unknown_label_in_the_test_file_is_named(tmp_path, capsys):
    (tmp_path / 'train.tsv').write_text('sentence\tlabel\ngood\tpos\nbad\tneg\n')
    (tmp_path / 'test.tsv').write_text('sentence\tlabel\nfine\tpos\nmeh\tneutral\n')
    code = cli.main(['finetune', '--task', 'classify', '--train', str(tmp_path / 'train.tsv'),
                     '--test', str(tmp_path / 'test.tsv'), '--pretrained', 'random', '--devices', 'cpu',
                     '--out', str(tmp_path / 'o')])
    assert code == 2
    assert re.search(r"test\.tsv:3: unknown label 'neutral' \(the model knows 'neg', 'pos'\)",
                     capsys.readouterr().err)
