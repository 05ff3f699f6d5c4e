"""Chinese text end to end on the book-vocabulary path, and vocabulary coverage on every command:
the ``basic`` tokenizer chosen for mostly CJK training text, the unknown-character share
(warning above 30 %, ``--max-unknown``, result.json), ``predict``'s line and ``--json``
record, and character-level tagging of ``--text``."""
import json
import random

import pytest

from gluon_bertft import cli
from gluon_bertft.common.errors import DataError
from gluon_bertft.data.coverage import BUILT, WARN_UNKNOWN, check_coverage, coverage
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.data.wordpiece import WordPiece
from gluon_bertft.data.words import WordTokenizer
from gluon_bertft.inference import predict
from test_chinese import chinese_folder
from tiny_data import TINY_ARGS, cli_run

GOOD, BAD, FILLER = '好棒赞美妙', '差烂糟坏', '这部电影的剧情演员音乐画面我们觉得'


def reviews(path, n=48, seed=0):
    """JSONL Chinese reviews, no spaces: ``pos`` ones hold a character of GOOD, ``neg`` of BAD."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = 'pos' if i % 2 else 'neg'
        chars = rng.sample(FILLER, 6) + [rng.choice(GOOD if label == 'pos' else BAD)]
        rng.shuffle(chars)
        lines.append(json.dumps(dict(text=''.join(chars) + '。', label=label), ensure_ascii=False))
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def char_ner(path, n=48, seed=0):
    """One character a line: 北京/上海 are LOC, 张三/李四 PER."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.random()
            name = rng.choice(['北京', '上海']) if kind < 0.3 else rng.choice(['张三', '李四']) if kind < 0.6 else None
            if name:
                tag = 'LOC' if name in ('北京', '上海') else 'PER'
                lines += [f'{name[0]}\tB-{tag}', f'{name[1]}\tI-{tag}']
            else:
                lines += [f'{ch}\tO' for ch in rng.sample(FILLER, 2)]
        blocks.append('\n'.join(lines) + '\n')
    path.write_text('\n'.join(blocks), encoding='utf-8')
    return str(path)


# ---- the measure ----

def test_coverage_counts_characters_of_unknown_tokens():
    vocab = build_vocab(['a film 好'])
    found = coverage(WordTokenizer(vocab, 'basic'), ['a film 好 差差', 'unknownword'])
    # 差, 差 and the 11 characters of unknownword, of 1 + 4 + 1 + 2 + 11 non-space characters
    assert (found.unknown, found.chars) == (13, 19) and found.share == pytest.approx(13 / 19)
    assert found.lost == {'差': 2, 'unknownword': 1}
    assert coverage(WordTokenizer(vocab, 'whitespace'), ['差差 film']).unknown == 2
    assert coverage(WordTokenizer(vocab), []).share == 0.0


def test_coverage_of_a_wordpiece_vocabulary(tmp_path):
    wp = WordPiece.from_folder(chinese_folder(tmp_path))
    found = coverage(wp, ['剧情无聊，浪费时间。', 'hello 中国'])
    assert found.lost == {'hello': 1} and (found.unknown, found.chars) == (5, 17)


def test_a_warning_above_the_threshold_and_an_error_above_max_unknown():
    tok = WordTokenizer(build_vocab(['好']), 'basic')
    said = []
    assert check_coverage(tok, ['好好好'], 'f', 'v', log=said.append) == 0.0 and not said
    share = check_coverage(tok, ['好差差'], 'f.jsonl', "minilm's vocabulary", log=said.append)
    assert share > WARN_UNKNOWN and len(said) == 1
    assert ('66.7% of the characters of f.jsonl (2 of 3) fall into unknown tokens of minilm\'s '
            'vocabulary (lost, most frequent first: 差)') in said[0]
    assert 'hf:bert-base-chinese' in said[0] and '--pretrained random' in said[0]
    with pytest.raises(DataError, match=r'66\.7% .* above --max-unknown 0\.5; use a model'):
        check_coverage(tok, ['好差差'], 'f', 'v', max_unknown=0.5)
    check_coverage(tok, ['好差差'], 'f', 'v', max_unknown=0.7, log=said.append)


def test_a_vocabulary_built_from_the_training_data_gets_its_own_advice():
    tok = WordTokenizer(build_vocab(['a good film']), 'whitespace')
    said = []
    check_coverage(tok, ['a dull lifeless film'], 'dev.tsv', BUILT, log=said.append)
    assert len(said) == 1 and 'train on more rows (--max-examples)' in said[0], said
    assert '--pretrained minilm' in said[0] and 'fine-tune with --pretrained random' not in said[0]


# ---- Chinese from the command line (book vocabulary built from the data) ----

@pytest.fixture(scope='module')
def zh_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp('zh')
    train, test = reviews(folder / 'train.jsonl'), reviews(folder / 'test.jsonl', 16, seed=1)
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(['finetune', '--task', 'classify', '--train', train, '--test', test,
                         '--text-columns', 'text', *TINY_ARGS, '--out', str(folder / 'run')])
    assert code == 0, out.getvalue()
    return folder, out.getvalue()


def test_mostly_chinese_text_gets_the_basic_tokenizer_and_says_so(zh_model):
    folder, log = zh_model
    assert 'the training text is mostly CJK (88% of its characters): --tokenizer basic' in log
    config = json.loads((folder / 'run' / 'model' / 'config.json').read_text(encoding='utf-8'))
    assert config['tokenizer'] == 'basic'
    vocab = json.loads((folder / 'run' / 'model' / 'vocab.json').read_text(encoding='utf-8'))
    assert '好' in vocab and '剧' in vocab  # characters, not whole sentences
    result = json.loads((folder / 'run' / 'result.json').read_text())
    assert result['unknown_share'] == {'train': 0.0, 'test': 0.0}
    assert 'WARNING' not in log


def test_predict_prints_the_label_with_its_probability_and_json_the_record(zh_model, capsys):
    model = str(zh_model[0] / 'run' / 'model')
    capsys.readouterr()
    assert cli.main(['predict', '--model', model, '--devices', 'cpu', '--text', '剧情很棒。']) == 0
    line = capsys.readouterr().out.strip()
    label, p, other, q = line.replace('(', '').replace(')', '').split()
    assert {label, other} == {'pos', 'neg'} and float(p) >= float(q)
    assert abs(float(p) + float(q) - 1) <= 0.011
    assert cli.main(['predict', '--model', model, '--devices', 'cpu', '--text', '剧情很棒。',
                     '--json']) == 0
    record = json.loads(capsys.readouterr().out)
    assert record['where'] == '<input>' and record['label'] == label
    assert set(record['probabilities']) == {'pos', 'neg'}


@pytest.mark.parametrize('command', ['predict', 'explain', 'evaluate'])
def test_unknown_text_warns_and_max_unknown_refuses_on_every_command(zh_model, command, capsys, tmp_path):
    model = str(zh_model[0] / 'run' / 'model')
    if command == 'evaluate':
        data = tmp_path / 'unseen.jsonl'
        data.write_text('{"text": "猫狗鸟鱼马牛羊好", "label": "pos"}\n', encoding='utf-8')
        given = ['--data', str(data)]
    else:
        given = ['--text', '猫狗鸟鱼马牛羊好']
    extra = ['--out', str(tmp_path / 'x')] if command == 'explain' else []
    code, err = cli_run(capsys, command, '--model', model, '--devices', 'cpu', *given, *extra)
    assert code == 0 and 'WARNING: 87.5% of the characters of ' in err and '猫' in err
    code, err = cli_run(capsys, command, '--model', model, '--devices', 'cpu', *given, *extra,
                        '--max-unknown', '0.5')
    assert code == 2 and 'above --max-unknown 0.5' in err


def test_finetune_refuses_text_beyond_max_unknown(tmp_path, capsys):
    train = reviews(tmp_path / 'train.jsonl')
    test = tmp_path / 'test.jsonl'
    test.write_text('{"text": "猫狗鸟鱼马牛羊好", "label": "pos"}\n' * 2, encoding='utf-8')
    code, err = cli_run(capsys, 'finetune', '--task', 'classify', '--train', train, '--test', test,
                        '--text-columns', 'text', *TINY_ARGS, '--out', tmp_path / 'run',
                        '--max-unknown', '0.2')
    assert code == 2 and f'characters of {test} (14 of 16)' in err and 'above --max-unknown 0.2' in err
    assert not (tmp_path / 'run').exists()
    # the vocabulary was built from the training data: --pretrained random is no remedy here
    assert 'built from the training data' in err and 'train on more rows' in err
    assert 'fine-tune with --pretrained random' not in err


def test_the_whitespace_tokenizer_stays_when_asked(tmp_path, capsys):
    train = reviews(tmp_path / 'train.jsonl')
    code, _ = cli_run(capsys, 'finetune', '--task', 'classify', '--train', train, '--text-columns',
                      'text', '--tokenizer', 'whitespace', *TINY_ARGS, '--out', tmp_path / 'run')
    out = capsys.readouterr().out
    assert code == 0 and 'mostly CJK' not in out
    config = json.loads((tmp_path / 'run' / 'model' / 'config.json').read_text(encoding='utf-8'))
    assert config['tokenizer'] == 'whitespace'


def test_character_level_tagging_splits_text_into_characters(tmp_path, capsys):
    train, test = char_ner(tmp_path / 'train.txt'), char_ner(tmp_path / 'test.txt', 16, seed=1)
    code, err = cli_run(capsys, 'finetune', '--task', 'tag', '--train', train, '--test', test,
                        *TINY_ARGS, '--out', tmp_path / 'run')
    assert code == 0, err
    model = str(tmp_path / 'run' / 'model')
    config = json.loads((tmp_path / 'run' / 'model' / 'config.json').read_text(encoding='utf-8'))
    assert config['words'] == 'characters' and config['tokenizer'] == 'basic'
    net, vocab, task = predict.load_model(model)
    record = predict.predict_record(net, vocab, task, text='张三 在北京')
    assert record['words'] == ['张', '三', '在', '北', '京'] and len(record['tags']) == 5
    capsys.readouterr()
    assert cli.main(['predict', '--model', model, '--devices', 'cpu', '--text', '张三在北京']) == 0
    pairs = capsys.readouterr().out.split()
    assert [p.split('/')[0] for p in pairs] == ['张', '三', '在', '北', '京']


# ---- Chinese in the explanation's picture ----

def chinese_explanation():
    words = ['<cls>', '剧', '情', '无', '聊', '，', '浪', '费', '时', '间', '。', '<sep>']
    return dict(method='integrated gradients', words=words, tokens=words,
                prediction=dict(label='差评', probabilities={'差评': 0.9, '好评': 0.1}),
                targets=[dict(target='差评', word_attributions=[0.1 * k for k in range(12)])],
                attention=dict(layer=0, head='mean', weights=[[1 / 12] * 12] * 12))


def test_the_png_draws_chinese_with_a_cjk_font(tmp_path):
    import warnings
    from gluon_bertft.inference import explain_plot
    if explain_plot.cjk_font() is None:
        pytest.skip('no CJK font installed (apt-get install fonts-noto-cjk)')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        explain_plot.plot_explanation(chinese_explanation(), str(tmp_path / 'e.png'))
    assert not [w for w in caught if 'missing from' in str(w.message)]
    assert (tmp_path / 'e.png').stat().st_size > 0


def test_without_a_cjk_font_it_says_once_how_to_install_one(tmp_path, monkeypatch, capsys):
    import warnings
    from gluon_bertft.inference import explain_plot
    monkeypatch.setattr(explain_plot, '_found', {'name': None})
    monkeypatch.setattr(explain_plot, '_said', [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for k in range(2):
            explain_plot.plot_explanation(chinese_explanation(), str(tmp_path / f'e{k}.png'))
    err = capsys.readouterr().err
    assert err.count('apt-get install fonts-noto-cjk') == 1
    assert not [w for w in caught if 'missing from' in str(w.message)]
