"""A probe of issue 24's kinds at the model boundary (``evaluate``, ``predict``, ``explain``),
each kind fixed in one place and tested here as a kind: folders that are not saved models
(kinds 5 and 10), options that do not apply (6), text with nothing visible in a data file (7,
every reader, training and prediction alike)."""
import json
import os

import pytest

from gluon_bertft.common.errors import DataError
from gluon_bertft.common.files import blank
from gluon_bertft.data import conll, snli, squad, tsv
from hf_tiny import write_tiny_hf_bert
from tiny_data import classify_tsv, refused, untrained_model

CPU = ['--devices', 'cpu']
ZW = '\u200b\u2060\ufeff'  # zero-width space, word joiner, byte-order mark


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return untrained_model('classify', tmp_path_factory.mktemp('classify'))


def commands(model_path, tmp_path, export=True):
    """Each command that loads a model, with ``model_path`` as its --model (``export`` too:
    it refuses a book-format model later, so not where the model is whole)."""
    data = classify_tsv(tmp_path / 'data.tsv', 4)
    found = [['evaluate', '--model', model_path, '--data', data, *CPU],
            ['predict', '--model', model_path, '--text', 'a film', *CPU],
            ['predict', '--model', model_path, '--data', data, '--output', '-', *CPU],
            ['explain', '--model', model_path, '--text', 'a film', '--out', tmp_path / 'why', *CPU],
            ['export', '--model', model_path, '--format', 'hf', '--out', tmp_path / 'hf']]
    return found if export else found[:-1]


def not_a_model(tmp_path, kind):
    """A --model path that is no saved model folder, of the given kind."""
    path = tmp_path / kind
    if kind == 'file':
        path.write_text('{}')
    elif kind == 'pipe':
        os.mkfifo(path)
    elif kind == 'device':
        return '/dev/null'
    elif kind == 'empty folder':
        path.mkdir()
    elif kind == 'hugging face':
        write_tiny_hf_bert(str(path))
    elif kind == 'link loop':
        os.symlink(path, path)
    return str(path)


@pytest.mark.parametrize('kind, match', [
    ('absent', r'absent: no such model folder'),
    ('link loop', r'link loop: no such model folder \(a symbolic link to nothing\)'),
    ('file', r'file: a file, not a model folder \(give the folder finetune wrote, OUT/model\)'),
    ('pipe', r'pipe: a named pipe, not a regular file'),
    ('device', r'/dev/null: a device, not a regular file'),
    ('empty folder', r'empty folder: not a saved model folder \(no config\.json'),
    ('hugging face', r'hugging face/config\.json: "architectures" is \[\'BertModel\'\]; .*'
                     r'a pretrained encoder: give it to finetune --pretrained'),
])
def test_a_path_that_is_no_saved_model_says_what_it_is(tmp_path, capsys, kind, match):
    path = not_a_model(tmp_path, kind)
    for argv in commands(path, tmp_path):
        refused(capsys, *argv, match=match)


@pytest.mark.parametrize('name', ['vocab.json', 'config.json', 'model.params'])
def test_a_pipe_inside_a_model_folder_is_named(tmp_path, capsys, model, name):
    import shutil
    broken = tmp_path / 'model'
    shutil.copytree(model, broken)
    os.remove(broken / name)
    os.mkfifo(broken / name)
    for argv in commands(str(broken), tmp_path, export=False):
        refused(capsys, *argv, match=rf'{name}: a named pipe, not a regular file')


def test_predict_refuses_batch_size_without_data(capsys, model):
    refused(capsys, 'predict', '--model', model, '--text', 'a film', '--batch-size', '8', *CPU,
            match=r'--batch-size: applies with --data')


@pytest.mark.parametrize('text', ['', ' \t', ZW, '\x01\x7f', '\u202e', ' \u200b '])
def test_blank_is_text_with_nothing_visible(text):
    assert blank(text)


@pytest.mark.parametrize('text', ['a', '\u0301', '.', '\U0001F600', '\u4e2d'])
def test_blank_keeps_visible_text(text):
    assert not blank(text)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return str(path)


SNLI_TXT = 'gold_label\tsentence1_binary_parse\tsentence2_binary_parse\n'
# (file name, content with a text of nothing visible on line 2, reader, the message's place)
READERS = [
    ('t.tsv', f'sentence\tlabel\n{ZW}\tpos\n', lambda p: tsv.read_table(p), r't\.tsv:2: empty text'),
    ('t.csv', f'sentence,label\n{ZW},pos\n', lambda p: tsv.read_table(p), r't\.csv:2: empty text'),
    ('t.jsonl', '{"sentence": "a", "label": "x"}\n' + json.dumps({'sentence': ZW, 'label': 'x'}),
     lambda p: tsv.read_table(p), r't\.jsonl:2: empty text'),
    ('t.pos', f'good\n{ZW}\n', lambda p: tsv.read_table(p, ('0',), None, 'tsv'), r't\.pos:2: empty text'),
    ('s.jsonl', '{"gold_label": "neutral", "sentence1": "a", "sentence2": "b"}\n'
     + json.dumps({'gold_label': 'neutral', 'sentence1': ZW, 'sentence2': 'b'}),
     snli.read_snli, r's\.jsonl:2: empty premise \(nothing visible'),
    ('snli_1.0_dev.txt', f'{SNLI_TXT}neutral\t( a )\t( {ZW} )\n', snli.read_snli,
     r'snli_1\.0_dev\.txt:2: empty hypothesis \(nothing visible'),
    ('t.conll', f'anna B-PER\n{ZW} O\n', conll.read_conll, r't\.conll:2: the word .* has nothing visible'),
]


@pytest.mark.parametrize('name, content, read, match', READERS)
@pytest.mark.parametrize('labelled', [True, False])
def test_every_reader_refuses_text_with_nothing_visible(tmp_path, name, content, read, match,
                                                        labelled):
    """At training (labelled) and at predict --data (unlabelled) alike; before, such text was
    trained on and predicted (a prediction of nothing)."""
    path = write(tmp_path, name, content)
    if not labelled and read is snli.read_snli:
        read = lambda p: snli.read_snli(p, keep_unlabelled=True)
    elif not labelled and read is conll.read_conll:
        read = lambda p: conll.read_conll(p, tagged=False)
    with pytest.raises(DataError, match=match):
        read(path)


def test_squad_refuses_a_question_or_passage_with_nothing_visible(tmp_path):
    for field, match in (('question', 'empty or missing "question"'),
                         ('context', 'the question has no passage')):
        qa = dict(id='q1', question='who?', answers=[dict(text='a', answer_start=0)])
        para = dict(context='a b', qas=[qa])
        (qa if field == 'question' else para)[field] = ZW
        path = write(tmp_path, 'q.json', json.dumps(dict(data=[dict(paragraphs=[para])])))
        with pytest.raises(DataError, match=match):
            squad.read_squad(path)


def test_predict_data_refuses_invisible_text(tmp_path, capsys, model):
    data = write(tmp_path, 'd.tsv', f'sentence\tlabel\na film\tpos\n{ZW}\tneg\n')
    refused(capsys, 'predict', '--model', model, '--data', data, '--output', '-', *CPU,
            match=r'd\.tsv:3: empty text in text column 1 \(nothing visible')


def test_an_empty_snli_file_is_named_empty(tmp_path):
    with pytest.raises(DataError, match=r'snli_1\.0_dev\.txt: the file is empty'):
        snli.read_snli(write(tmp_path, 'snli_1.0_dev.txt', '\n'))


def test_non_finite_weights_in_a_saved_model_are_named(tmp_path, capsys, model):
    """Kind 1 for saved models: a model.params with NaN or inf would predict NaN silently."""
    import shutil

    import mxnet as mx
    from mxnet import npx
    broken = tmp_path / 'model'
    shutil.copytree(model, broken)
    params = npx.load(str(broken / 'model.params'))
    name = sorted(params)[-1]
    values = params[name].asnumpy()
    values.flat[0] = float('inf')
    params[name] = mx.np.array(values)
    npx.save(str(broken / 'model.params'), params)
    for argv in commands(str(broken), tmp_path, export=False):
        refused(capsys, *argv, match=rf'model\.params: non-finite values \(NaN or inf\) in 1 '
                                     rf'tensor\(s\): {name} \(1 of')
