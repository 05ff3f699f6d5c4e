"""Tagging of any kind: the tag column (``--tag-column``), the scheme (``--tag-scheme``: IOB
spans or plain per-token tags such as POS), their metrics and baseline, and a saved plain-tag
model through evaluate, predict and explain."""
import json
import random
import re

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l

from conftest import shared_file
from gluon_bertft import cli, tasks
from gluon_bertft.common import metrics
from gluon_bertft.common.errors import ConfigError, DataError, PretrainedError
from gluon_bertft.config import FinetuneConfig
from gluon_bertft.data import conll
from gluon_bertft.data.tokenize import RESERVED_TOKENS
from gluon_bertft.finetune import finetune
from gluon_bertft.inference import predict
from gluon_bertft.inference.explain import explain
from gluon_bertft.tasks.tag import frequent_tags
from hf_tiny import write_tiny_hf_bert

CPU = [mx.cpu()]
# word: (POS, chunk in IOB1 as CoNLL-2003 writes it, NER in IOB1)
PHRASES = [
    [('anna', 'NNP', 'I-NP', 'I-PER'), ('smith', 'NNP', 'I-NP', 'I-PER')],
    [('peter', 'NNP', 'I-NP', 'I-PER')],
    [('flew', 'VBD', 'I-VP', 'O'), ('to', 'TO', 'I-PP', 'O'), ('paris', 'NNP', 'I-NP', 'I-LOC')],
    [('saw', 'VBD', 'I-VP', 'O'), ('the', 'DT', 'I-NP', 'O'), ('big', 'JJ', 'I-NP', 'O'),
     ('dog', 'NN', 'I-NP', 'O')],
    [('in', 'IN', 'I-PP', 'O'), ('rome', 'NNP', 'I-NP', 'I-LOC'), ('.', '.', 'O', 'O')],
]


def sentences(n, seed):
    rng = random.Random(seed)
    return [[line for k in sorted(rng.sample(range(len(PHRASES)), 3)) for line in PHRASES[k]]
            for _ in range(n)]


def write_conll(path, n=40, seed=0, extra=()):
    """A 4-column CoNLL file (``word POS chunk NER``) of ``n`` sentences, plus ``extra`` lines."""
    blocks = ['-DOCSTART- -X- -X- O\n'] + [''.join(' '.join(f) + '\n' for f in s)
                                           for s in sentences(n, seed)]
    path.write_text('\n'.join(blocks) + ''.join(extra), encoding='utf-8')
    return str(path)


def test_tag_column_picks_the_column(tmp_path):
    path = write_conll(tmp_path / 'a.conll', n=3)
    first = sentences(3, 0)[0]
    pos = conll.read_conll(path, column=1, scheme='plain')[0]
    assert pos.words == [f[0] for f in first] and pos.tags == [f[1] for f in first]
    chunks = conll.read_conll(path, column=2)[0]  # iob: IOB1 -> IOB2
    assert chunks.tags == conll.to_iob2([f[2] for f in first]) and chunks.tags[0] == 'B-NP'
    assert conll.read_conll(path)[0].tags == conll.to_iob2([f[3] for f in first])  # the last


def test_a_line_without_the_tag_column_names_file_and_line(tmp_path):
    (tmp_path / 'a.conll').write_text('EU NNP I-NP I-ORG\nrejects VBZ\n', encoding='utf-8')
    with pytest.raises(DataError, match=r'a\.conll:2: 2 column\(s\), but the tag column is 2'):
        conll.read_conll(str(tmp_path / 'a.conll'), column=2, scheme='plain')


@pytest.mark.parametrize('column, scheme, metric', [(1, 'plain', 'accuracy'), (2, 'iob', 'f1'),
                                                    (3, 'iob', 'f1'), (None, 'iob', 'f1')])
def test_auto_decides_the_scheme_from_the_training_file(tmp_path, column, scheme, metric):
    task = tasks.make_task('tag', tag_column=column)
    rows = task.read(write_conll(tmp_path / 'train.conll'))
    assert task.scheme == scheme and task.metric == metric
    task.fit(rows)
    if scheme == 'plain':
        assert task.config['labels'] == ['.', 'DT', 'IN', 'JJ', 'NN', 'NNP', 'TO', 'VBD']
    else:  # IOB1 in the file, IOB2 read
        assert all(s.tags == conll.to_iob2(s.tags) for s in rows)
        assert task.config['labels'][0] == 'O' and len(task.config['labels']) % 2 == 1


def test_iob_forced_on_pos_tags_names_file_and_line(tmp_path):
    task = tasks.make_task('tag', tag_column=1, tag_scheme='iob')
    with pytest.raises(DataError, match=r"train\.conll:3: tag 'NNP' is not O, B-TYPE or I-TYPE"):
        task.read(write_conll(tmp_path / 'train.conll'))


def test_plain_forced_on_ner_tags_keeps_them_as_written(tmp_path):
    task = tasks.make_task('tag', tag_scheme='plain')
    rows = task.read(write_conll(tmp_path / 'train.conll'))
    task.fit(rows)
    assert task.scheme == 'plain' and task.metric == 'accuracy'
    assert task.config['labels'] == ['I-LOC', 'I-PER', 'O']  # IOB1 as written, no B-


def test_an_auto_iob_model_refuses_pos_tags_in_its_test_file(tmp_path):
    task = tasks.make_task('tag')
    task.read(write_conll(tmp_path / 'train.conll'))
    (tmp_path / 'b.conll').write_text('a O\n\nthe DT\n', encoding='utf-8')
    with pytest.raises(DataError, match=r"b\.conll:3: tag 'DT' is not O"):
        task.read(str(tmp_path / 'b.conll'))


def test_tag_report_against_hand_computed_values():
    report = metrics.tag_report([['A', 'B', 'A'], ['C']], [['A', 'A', 'A'], ['B']])
    # A: tp 2 of 3 predicted, 2 gold -> P 2/3, R 1, F1 0.8; B and C: no hit
    assert report == pytest.approx({'accuracy': 0.5, 'macro_f1': 0.8 / 3, 'f1[A]': 0.8,
                                    'f1[B]': 0.0, 'f1[C]': 0.0})
    assert metrics.tag_report([['X', 'Y']], [['X', 'Y']])['accuracy'] == 1.0
    with pytest.raises(ValueError):
        metrics.tag_report([['X', 'Y']], [['X']])


def test_frequent_tag_baseline():
    train = [conll.Sentence(['a', 'b', 'a'], ['N', 'V', 'N'], 'f', 1),
             conll.Sentence(['a', 'c'], ['V', 'N'], 'f', 5)]
    # 'a': N twice, V once; 'b': V; unseen 'z': the most frequent tag overall, N (3 of 5)
    assert frequent_tags(train, [['a', 'b', 'z']]) == [['N', 'V', 'N']]


def test_unknown_tags_in_a_test_file_count_as_wrong(tmp_path):
    task = tasks.make_task('tag', max_len=16, tag_column=1)
    task.fit(task.read(write_conll(tmp_path / 'train.conll', n=10)))
    (tmp_path / 'test.conll').write_text('anna NNP\nsaid FW\nhi UH\n', encoding='utf-8')
    rows = task.read(str(tmp_path / 'test.conll'))
    vocab = d2l.Vocab([['anna']], reserved_tokens=RESERVED_TOKENS)
    data = task.encode(rows, vocab)
    names = task.config['labels']
    assert data.labels[0, 1:4].tolist() == [names.index('NNP'), len(names), len(names)]
    gold = onp.zeros((1, 16, len(names)), dtype=onp.float32)  # an oracle on the known tags
    gold[0, 1, names.index('NNP')] = 1
    report = task.score(list(gold), rows, data)
    assert report['accuracy'] == pytest.approx(1 / 3)
    assert report['f1[FW]'] == 0.0 and report['f1[NNP]'] == 1.0


RUN = dict(pretrained='random', preset='bert.tiny', max_len=24, batch_size=8, devices='cpu',
           epochs=8, lr=3e-3)


@pytest.fixture(scope='module')
def pos_model(tmp_path_factory):
    """A POS tagger (plain tags of column 1) trained on the tiny data and saved, made once."""
    folder = tmp_path_factory.mktemp('pos')
    train, test = write_conll(folder / 'train.conll'), write_conll(folder / 'test.conll', 12, 1)
    config = FinetuneConfig(task='tag', train=train, test=test, tag_column=1,
                            out=str(folder / 'run'), **RUN)
    printed = []
    _, _, result = finetune(config, log=printed.append)
    return folder, result, '\n'.join(printed)


@pytest.mark.slow
def test_pos_finetune_saves_scheme_and_column_and_evaluates_the_same(pos_model):
    folder, result, printed = pos_model
    assert {'accuracy', 'macro_f1', 'f1[NNP]'} <= set(result['test'])
    assert result['test']['accuracy'] > 0.9 and result['baseline']['accuracy'] == 1.0
    assert "baseline (each word's most frequent training tag" in printed
    config = json.loads((folder / 'run' / 'model' / 'config.json').read_text())
    assert config['reader']['tag_scheme'] == 'plain' and config['reader']['tag_column'] == 1
    assert 'NNP' in config['labels'] and 'B-PER' not in config['labels']
    report = predict.evaluate_file(str(folder / 'run' / 'model'), str(folder / 'test.conll'),
                                   batch_size=4, devices=CPU)
    assert report == pytest.approx(result['test'], abs=1e-6)


def test_pos_predict_shows_word_tag_pairs_and_explains_every_word(pos_model, tmp_path):
    folder = pos_model[0]
    net, vocab, task = predict.load_model(str(folder / 'run' / 'model'), CPU)
    shown = predict.predict(net, vocab, task, text='anna flew to paris')
    assert shown == 'anna/NNP flew/VBD to/TO paris/NNP'
    (tmp_path / 'words.txt').write_text('peter\nsaw\nthe\ndog\n', encoding='utf-8')
    assert predict.predict_file(str(folder / 'run' / 'model'), str(tmp_path / 'words.txt'),
                                str(tmp_path / 'out.jsonl'), devices=CPU, log=lambda *a: None) == 1
    record = json.loads((tmp_path / 'out.jsonl').read_text())
    assert record['tags'] == ['NNP', 'VBD', 'DT', 'NN']
    found = explain(net, vocab, task, method='gradxinput', text='anna flew to paris')
    assert [t['target'] for t in found['targets']] == [
        "word 0 'anna': NNP", "word 1 'flew': VBD", "word 2 'to': TO", "word 3 'paris': NNP"]


def test_cli_predicts_pos_tags(pos_model, capsys):
    model = str(pos_model[0] / 'run' / 'model')
    assert cli.main(['predict', '--model', model, '--devices', 'cpu', '--text', 'peter flew']) == 0
    assert capsys.readouterr().out.strip() == 'peter/NNP flew/VBD'


def test_wordpiece_model_tags_chunks_and_pos(tmp_path):
    hf = tmp_path / 'hf'
    write_tiny_hf_bert(str(hf), seed=1)
    train = write_conll(tmp_path / 'train.conll', n=16)
    for column, metric in ((2, 'f1'), (1, 'accuracy')):
        config = FinetuneConfig(task='tag', train=train, test=train, tag_column=column,
                                pretrained=str(hf), max_len=24, batch_size=8, devices='cpu',
                                epochs=1, out=str(tmp_path / f'run{column}'))
        _, _, result = finetune(config, log=lambda *a: None)
        assert metric in result['test'] and 0 <= result['test'][metric] <= 1
        net, vocab, task = predict.load_model(str(tmp_path / f'run{column}' / 'model'), CPU)
        assert task.metric == metric
        shown = predict.predict(net, vocab, task, text='anna smith flew')
        assert shown.count('/') == 3 if column == 1 else ('/' not in shown)


@pytest.mark.parametrize('task, args, message', [
    ('classify', ['--tag-column', '1'], r'--tag-column: applies to --task tag only'),
    ('classify', ['--tag-scheme', 'plain'], r'--tag-scheme: applies to --task tag only'),
    ('tag', ['--tag-column', '7'], r'train\.conll:3: 4 column\(s\), but the tag column is 7'),
    ('tag', ['--tag-column', '0'], r'--tag-column 0: give a column number >= 1'),
    ('tag', ['--tag-column', '1', '--tag-scheme', 'iob'], r"train\.conll:3: tag 'NNP' is not O"),
])
def test_cli_refuses_tag_options_that_do_not_apply(tmp_path, capsys, task, args, message):
    train = write_conll(tmp_path / 'train.conll', n=4)
    code = cli.main(['finetune', '--task', task, '--train', train, '--pretrained', 'random',
                     '--devices', 'cpu', '--out', str(tmp_path / 'o'), *args])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / 'o').exists()


def test_checkpoints_record_the_tag_options_only_when_given():
    """A checkpoint written before the options existed (tag: iob, last column) still resumes."""
    assert not {'tag_column', 'tag_scheme'} & set(FinetuneConfig(task='tag', train='x').run_settings())
    given = FinetuneConfig(task='tag', train='x', tag_column=1, tag_scheme='plain').run_settings()
    assert given['tag_column'] == 1 and given['tag_scheme'] == 'plain'


def test_python_api_refuses_a_bad_scheme():
    with pytest.raises(ConfigError, match='--tag-scheme bio: choose from auto, iob, plain'):
        FinetuneConfig(task='tag', train='x', tag_scheme='bio').check()


def test_old_saved_tag_config_reads_iob_from_the_last_column(tmp_path):
    old = dict(task='tag', max_len=32, labels=['O', 'B-PER', 'I-PER'], reader=dict(encoding='utf-8'))
    task = tasks.task_from_config(old)
    assert task.scheme == 'iob' and task.metric == 'f1'
    rows = task.read(write_conll(tmp_path / 'a.conll', n=2))
    assert rows[0].tags == conll.to_iob2([f[3] for f in sentences(2, 0)[0]])


@pytest.mark.parametrize('reader, field', [
    (dict(tag_scheme='auto'), 'tag_scheme'), (dict(tag_scheme='bio'), 'tag_scheme'),
    (dict(tag_column=0), 'tag_column'), (dict(tag_column='1'), 'tag_column')])
def test_bad_saved_tag_reader_options_are_named(reader, field):
    saved = dict(task='tag', max_len=32, labels=['NN', 'VB'], reader=dict(encoding='utf-8', **reader))
    with pytest.raises(PretrainedError, match=rf"config\.json: reader '{field}' is"):
        tasks.task_from_config(saved)


def test_real_conll_pos_is_plain_and_chunks_are_iob():
    path = shared_file('conll2003', 'eng.testa')
    pos = tasks.make_task('tag', tag_column=1)
    rows = pos.read(path)
    assert pos.scheme == 'plain' and rows[0].tags[0] == 'NNP'
    assert {'NNP', 'VBZ', 'DT', 'NN'} <= {t for s in rows for t in s.tags}
    chunk = tasks.make_task('tag', tag_column=2)
    rows = chunk.read(path)
    assert chunk.scheme == 'iob' and rows[0].tags[0] == 'B-NP'
    assert {t[2:] for s in rows for t in s.tags if t != 'O'} >= {'NP', 'VP', 'PP'}


def _pos_run(folder, out, epochs, **options):
    train = write_conll(folder / 'train.conll')
    config = FinetuneConfig(task='tag', train=train, tag_column=1, out=str(folder / out),
                            checkpoint_every=3, **dict(RUN, epochs=epochs, **options))
    return finetune(config, log=lambda *a: None)


def _params(net):
    return {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}


@pytest.mark.slow
def test_a_resumed_pos_run_equals_an_unbroken_one(tmp_path):
    """Plain tags through checkpoint and --resume: the decided scheme and column come back."""
    whole, _, expected = _pos_run(tmp_path, 'whole', 2)
    _pos_run(tmp_path, 'part', 1)
    net, _, result = _pos_run(tmp_path, 'part', 2, resume=True)
    assert result['test'] == pytest.approx(expected['test'], abs=1e-6)
    for name, value in _params(whole).items():
        onp.testing.assert_allclose(_params(net)[name], value, rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_pos_on_two_cpu_devices_equals_one(tmp_path):
    nets = [_pos_run(tmp_path, d.replace(',', '_'), 1, devices=d, dropout=0.0)[0]
            for d in ('cpu:0,cpu:1', 'cpu')]
    one = _params(nets[1])
    for name, value in _params(nets[0]).items():
        if name.endswith('W_k.bias'):  # its true gradient is 0 (softmax ignores a shift of
            continue  # every key's score): Adam steps on rounding noise, by up to lr each
        onp.testing.assert_allclose(value, one[name], rtol=1e-4, atol=2e-5, err_msg=name)
