"""The one output rule (gluon_bertft.common.outputs) and every command that writes: finetune, pretrain,
predict, explain. An output is never an input (resolved paths), ``--out`` is a folder replaced
as a whole at the end, ``--output`` a file whose extension gives its format or ``-`` for
standard output, a path ending in ``/`` is not a file and an empty path is refused."""
import json
import os

import pytest

from gluon_bertft.common import outputs
from gluon_bertft.cli import build_parser
from gluon_bertft.common.errors import ConfigError
from tiny_data import (TINY_ARGS, classify_tsv, cli_run, refused, untrained_model,
                       wiki_file)

PRETRAIN = ['--preset', 'bert.tiny', '--max-len', '32', '--batch-size', '8', '--steps', '2',
            '--devices', 'cpu']


def tree(folder):
    """Every path under ``folder`` with its bytes (files) or None (folders)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.join(root, name)] = None
        for name in files:
            path = os.path.join(root, name)
            found[path] = open(path, 'rb').read() if not os.path.islink(path) else os.readlink(path)
    return found


def refused_untouched(capsys, tmp_path, *argv, match):
    """The CLI refuses ``argv`` (exit 2, ``match`` on stderr) and writes or changes nothing."""
    before = tree(tmp_path)
    line = refused(capsys, *argv, match=match)
    assert tree(tmp_path) == before
    return line


# --- the module ---

def test_an_output_file_is_checked(tmp_path):
    data = tmp_path / 'data.tsv'
    data.write_text('x\n')
    (tmp_path / 'model').mkdir()
    (tmp_path / 'link.jsonl').symlink_to(data)
    os.link(data, tmp_path / 'hard.jsonl')
    inputs = [('--data', str(data)), ('--model', str(tmp_path / 'model')), ('--other', None)]
    formats = {'.jsonl': 'jsonl', '.csv': 'csv'}
    check = lambda path, **kw: outputs.check_output_file(path, '--output', inputs, formats, **kw)
    for path, match in [('', "--output '': an empty path; give a file"),
                        (None, "--output None: an empty path"),
                        ('-', '--output -: standard output is not an output of this command'),
                        (f'{tmp_path}/new/', 'new/: ends with /, which names a folder'),
                        (str(tmp_path), 'exists as a folder; give a file path'),
                        (str(tmp_path / 'p.txt'), r'p\.txt: give a file ending in \.jsonl or \.csv'),
                        (str(data), r'--output .*data\.tsv: is --data .*data\.tsv, an input'),
                        (str(tmp_path / 'link.jsonl'), r'link\.jsonl: is --data .*, an input'),
                        (str(tmp_path / 'hard.jsonl'), r'hard\.jsonl: is --data .*, an input'),
                        (str(tmp_path / 'model' / 'p.jsonl'), r'p\.jsonl: is inside --model '),
                        (str(tmp_path / 'data.tsv' / 'p.jsonl'), r'data\.tsv is a file, not a folder')]:
        with pytest.raises(ConfigError, match=match):
            check(path)
    assert check('-', stdout=True) == 'jsonl'
    assert check(str(tmp_path / 'new' / 'P.CSV')) == 'csv'
    assert check(str(tmp_path / 'p.jsonl')) == 'jsonl'
    assert outputs.check_output_file(str(tmp_path / 'x.any'), '--out') is None
    assert not (tmp_path / 'new').exists()  # checks make nothing


def test_an_output_folder_is_checked(tmp_path):
    corpus = tmp_path / 'corpus'
    corpus.mkdir()
    (corpus / 'wiki.train.tokens').write_text('a b .\n')
    (tmp_path / 'file').write_text('x')
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'model').mkdir()
    (tmp_path / 'mine' / 'checkpoint').mkdir()
    (tmp_path / 'mine' / '.checkpoint.k2j4_x').mkdir()  # what a run killed while saving leaves
    (tmp_path / 'theirs').mkdir()
    (tmp_path / 'theirs' / 'notes.txt').write_text('keep me')
    (tmp_path / 'alias').symlink_to(corpus)
    inputs = [('--corpus', str(corpus))]
    check = lambda path: outputs.check_out_folder(path, '--out', inputs, names=('model',),
                                                  keep=('checkpoint',))
    for path, match in [('', "--out '': an empty path; give a folder"),
                        (str(tmp_path / 'file'), 'file: exists as a file; give a folder path'),
                        (str(corpus), r'corpus: is --corpus .*corpus, an input of this run'),
                        (str(tmp_path / 'alias'), r'alias: is --corpus'),
                        (str(tmp_path / 'alias' / 'out'), r'alias/out: is inside --corpus'),
                        (str(tmp_path), r'--out .*: holds --corpus .*corpus, an input'),
                        (str(tmp_path / 'theirs'), r'theirs: holds notes\.txt, which this command '
                                                   'does not write; the folder is replaced as a whole'),
                        (str(tmp_path / 'file' / 'x'), 'file is a file, not a folder')]:
        with pytest.raises(ConfigError, match=match):
            check(path)
    check(str(tmp_path / 'mine'))
    check(str(tmp_path / 'new' / 'deeper') + '/')
    assert not (tmp_path / 'new').exists()


def test_replace_folder_replaces_as_a_whole_and_keeps_what_it_is_told(tmp_path):
    out = tmp_path / 'run'
    with outputs.replace_folder(str(out) + '/') as new:  # created when absent
        open(os.path.join(new, 'a.txt'), 'w').write('first')
    assert sorted(os.listdir(out)) == ['a.txt']
    (out / 'checkpoint').mkdir()
    (out / 'checkpoint' / 'state.json').write_text('{"step": 3}')
    (out / 'stale.txt').write_text('old')
    with outputs.replace_folder(str(out), keep=('checkpoint', 'absent')) as new:
        open(os.path.join(new, 'a.txt'), 'w').write('second')
        assert (out / 'a.txt').read_text() == 'first'  # not before the end
    assert sorted(os.listdir(out)) == ['a.txt', 'checkpoint']
    assert (out / 'a.txt').read_text() == 'second'
    assert (out / 'checkpoint' / 'state.json').read_text() == '{"step": 3}'
    with pytest.raises(RuntimeError, match='interrupted'):
        with outputs.replace_folder(str(out)) as new:
            open(os.path.join(new, 'a.txt'), 'w').write('third')
            raise RuntimeError('interrupted')
    assert (out / 'a.txt').read_text() == 'second' and (out / 'checkpoint').is_dir()
    assert sorted(os.listdir(tmp_path)) == ['run']  # no temporary left


def test_is_stdout():
    assert outputs.is_stdout('-') and not outputs.is_stdout('./-') and not outputs.is_stdout('')


@pytest.mark.parametrize('command, option', [('finetune', '--out'), ('pretrain', '--out'),
                                             ('pretrain', '--checkpoint'),
                                             ('predict', '--output'), ('explain', '--out'),
                                             ('launch', '--logs')])
def test_every_output_option_states_the_rule_in_its_help(command, option):
    sub = next(a for a in build_parser()._actions if a.dest == 'command').choices[command]
    action = next(a for a in sub._actions if option in a.option_strings)
    assert 'never an input' in action.help, action.help
    if option == '--output':
        assert all(s in action.help for s in ('.jsonl', '.csv', '- for JSON lines on standard',
                                              'standard error', 'ending in / is refused'))
    elif option == '--out':
        assert 'replaced as a whole at the end' in action.help, action.help


# --- finetune ---

@pytest.fixture
def train(tmp_path):
    (tmp_path / 'data').mkdir()
    return classify_tsv(tmp_path / 'data' / 'train.tsv')


@pytest.mark.parametrize('out, match', [
    ('', "--out '': an empty path; give a folder"),
    ('data', r'--out .*data: holds --train .*train\.tsv, an input of this run'),
    ('data/train.tsv', r'--out .*train\.tsv: is --train .*train\.tsv, an input'),
    ('link', r'--out .*link: is --train'),
    ('data/train.tsv/run', r'--out .*run: .*train\.tsv is a file, not a folder'),
    ('bert/run', r'--out .*bert/run: is inside --pretrained .*bert, an input'),
    ('theirs', r'--out .*theirs: holds notes\.txt, which this command does not write'),
    ('with_file', r'--out .*with_file/checkpoint: exists as a file; give a folder path'),
])
def test_finetune_refuses_an_out_that_breaks_the_rule(tmp_path, capsys, train, out, match):
    (tmp_path / 'link').symlink_to(train)
    (tmp_path / 'bert').mkdir()
    (tmp_path / 'bert' / 'vocab.json').write_text('[]')
    (tmp_path / 'theirs').mkdir()
    (tmp_path / 'theirs' / 'notes.txt').write_text('not a run')
    (tmp_path / 'with_file').mkdir()
    (tmp_path / 'with_file' / 'checkpoint').write_text('a file')
    pretrained = ['--pretrained', tmp_path / 'bert'] if out.startswith('bert') else []
    out = out and str(tmp_path / out)
    refused_untouched(capsys, tmp_path, 'finetune', '--task', 'classify', '--train', train,
                      *TINY_ARGS, *pretrained, '--out', out, match=match)


@pytest.mark.slow
def test_finetune_replaces_its_outputs_together_and_keeps_the_checkpoint(tmp_path, capsys, train):
    out = tmp_path / 'run'
    args = ['finetune', '--task', 'classify', '--train', train, *TINY_ARGS, '--out', out]
    code, err = cli_run(capsys, *args, '--checkpoint-every', 2)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ['checkpoint', 'model', 'result.json', 'training_curve.png']
    state = (out / 'checkpoint' / 'state.json').read_bytes()
    (out / 'model' / 'stale.txt').write_text('from the run before')
    code, err = cli_run(capsys, *args, '--seed', 1)  # no checkpoints this time: the old one stays
    assert code == 0, err
    assert sorted(os.listdir(out)) == ['checkpoint', 'model', 'result.json', 'training_curve.png']
    assert sorted(os.listdir(out / 'model')) == ['config.json', 'model.params', 'vocab.json']
    assert json.loads((out / 'model' / 'config.json').read_text())['seed'] == 1
    assert (out / 'checkpoint' / 'state.json').read_bytes() == state
    assert sorted(os.listdir(tmp_path)) == ['data', 'run']  # no temporary left beside it


# --- pretrain ---

@pytest.mark.parametrize('where, match', [
    (['--out', ''], "--out '': an empty path; give a folder"),
    (['--out', 'corpus/wiki.train.tokens'], r'--out .*wiki\.train\.tokens: is inside --corpus'),
    (['--out', 'bert.zip', '--corpus', 'corpus/wiki.train.tokens', '--checkpoint',
      'corpus/wiki.train.tokens'], r'--checkpoint .*tokens: is --corpus .*tokens, an input'),
    (['--out', 'corpus/bert.zip'], r'--out .*bert\.zip: is inside --corpus .*corpus, an input'),
    (['--out', 'corpus/bert'], r'--out .*corpus/bert: is inside --corpus'),
    (['--out', '.'], r'--out .*: holds --corpus'),
    (['--out', 'theirs'], r'--out .*theirs: holds notes\.txt, which this command does not write'),
    (['--out', 'bert.zip', '--checkpoint', ''], "--checkpoint '': an empty path; give a folder"),
    (['--out', 'bert.zip', '--checkpoint', 'corpus'], r'--checkpoint .*corpus: is --corpus'),
    (['--out', 'bert.zip/'], r'--out bert\.zip/: exists as a file; give a folder path'),
    (['--out', 'new', '--checkpoint', 'new/ckpt'],
     r'--checkpoint new/ckpt: is inside --out new, another output of this run$'),
    (['--out', 'new', '--checkpoint', 'new'], r'--checkpoint new: is --out new, another output'),
    (['--out', 'new/bert', '--checkpoint', 'new'], r'--checkpoint new: holds --out new/bert, another'),
])
def test_pretrain_refuses_an_out_that_breaks_the_rule(tmp_path, capsys, monkeypatch, where, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'corpus').mkdir()
    wiki_file(tmp_path / 'corpus' / 'wiki.train.tokens')
    (tmp_path / 'theirs').mkdir()
    (tmp_path / 'theirs' / 'notes.txt').write_text('not a BERT')
    (tmp_path / 'bert.zip').write_text('a file')
    refused_untouched(capsys, tmp_path, 'pretrain', '--corpus', 'corpus', *PRETRAIN, *where,
                      match=match)


@pytest.mark.slow
def test_pretrain_writes_a_folder_and_replaces_it(tmp_path, capsys):
    corpus, out = wiki_file(tmp_path / 'w.tokens'), tmp_path / 'bert'
    for _ in range(2):
        code, err = cli_run(capsys, 'pretrain', '--corpus', corpus, *PRETRAIN, '--out', str(out) + '/')
        assert code == 0, err
        assert sorted(os.listdir(out)) == ['config.json', 'pretrained.params', 'vocab.json']
    assert sorted(os.listdir(tmp_path)) == ['bert', 'bert.ckpt', 'bert.history.json',
                                            'bert.loss.png', 'w.tokens']


# --- predict ---

def place(spec, tmp_path, model):
    """The path a test case names: ``MODEL`` is the model folder, ``PARENT`` the folder
    holding it, other names are under ``tmp_path`` (a final ``/`` kept); ``''`` stays empty."""
    head, _, tail = spec.partition('/')
    base = {'MODEL': model, 'PARENT': os.path.dirname(model)}.get(head)
    if base is None:
        return spec and str(tmp_path / spec) + ('/' if spec.endswith('/') else '')
    return os.path.join(base, tail) if tail else base


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """A saved classify model folder (untrained)."""
    return untrained_model('classify', tmp_path_factory.mktemp('classify'))


@pytest.mark.parametrize('output, match', [
    ('', "--output '': an empty path; give a file"),
    ('new/', r'--output .*new/: ends with /, which names a folder; give a file path'),
    ('data.tsv', r'--output .*data\.tsv: is --data .*data\.tsv, an input of this run'),
    ('link.jsonl', r'--output .*link\.jsonl: is --data .*data\.tsv, an input'),
    ('MODEL/p.jsonl', r'--output .*p\.jsonl: is inside --model .*, an input'),
    ('MODEL', r'--output .*: is --model'),
    ('p.txt', r'--output .*p\.txt: give a file ending in \.jsonl or \.csv .*, or - for standard'),
    ('folder', r'--output .*folder: exists as a folder; give a file path'),
])
def test_predict_refuses_an_output_that_breaks_the_rule(tmp_path, capsys, model, output, match):
    data = classify_tsv(tmp_path / 'data.tsv', 4)
    (tmp_path / 'link.jsonl').symlink_to(data)
    (tmp_path / 'folder').mkdir()
    output = place(output, tmp_path, model)
    before = tree(model)
    refused_untouched(capsys, tmp_path, 'predict', '--model', model, '--data', data,
                      '--output', output, '--devices', 'cpu', match=match)
    assert tree(model) == before


def test_predict_to_standard_output_prints_json_lines_only(tmp_path, capsys, model):
    data = classify_tsv(tmp_path / 'data.tsv', 7)
    capsys.readouterr()
    from gluon_bertft import cli
    assert cli.main(['predict', '--model', model, '--data', data, '--output', '-',
                     '--devices', 'cpu']) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r['where'] for r in records] == [f'{data}:{i}' for i in range(2, 9)]
    assert all(r['label'] in ('neg', 'pos') for r in records)
    assert 'wrote 7 predictions to standard output' in err
    assert sorted(os.listdir(tmp_path)) == ['data.tsv']  # no file called '-'


# --- explain ---

@pytest.mark.parametrize('out, match', [
    ('', "--out '': an empty path; give a folder"),
    ('MODEL', r'--out .*: is --model .*, an input of this run'),
    ('MODEL/why', r'--out .*why: is inside --model'),
    ('PARENT', r'--out .*: holds --model'),
    ('file', r'--out .*file: exists as a file; give a folder path'),
    ('theirs', r'--out .*theirs: holds notes\.txt, which this command does not write'),
])
def test_explain_refuses_an_out_that_breaks_the_rule(tmp_path, capsys, model, out, match):
    (tmp_path / 'file').write_text('x')
    (tmp_path / 'theirs').mkdir()
    (tmp_path / 'theirs' / 'notes.txt').write_text('not an explanation')
    out = place(out, tmp_path, model)
    before = tree(os.path.dirname(model))
    refused_untouched(capsys, tmp_path, 'explain', '--model', model, '--text', 'a good film',
                      '--devices', 'cpu', '--out', out, match=match)
    assert tree(os.path.dirname(model)) == before


@pytest.mark.slow
def test_explain_writes_a_folder_and_replaces_it(tmp_path, capsys, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in ('a good film', 'a dull film'):
        code, err = cli_run(capsys, 'explain', '--model', model, '--text', text,
                            '--devices', 'cpu', '--out', 'dir/', '--method', 'gradxinput')
        assert code == 0, err
        assert sorted(os.listdir('dir')) == ['explanation.json', 'explanation.png']
        assert json.loads(open('dir/explanation.json').read())['input'] == dict(texts=[text])
    code, err = cli_run(capsys, 'explain', '--model', model, '--text', 'a good film',
                        '--devices', 'cpu', '--method', 'gradxinput')
    assert code == 0, err
    assert sorted(os.listdir('explanation')) == ['explanation.json', 'explanation.png']
    assert sorted(os.listdir(tmp_path)) == ['dir', 'explanation']


# --- launch: its --logs folder is written into (never replaced), checked by the same rule ---

@pytest.mark.parametrize('logs, match', [
    ('', "launch: error: --logs '': an empty path; give a folder"),
    ('file', r'launch: error: --logs .*file: exists as a file; give a folder path'),
    ('hosts', r'launch: error: --logs .*hosts: is --hosts .*hosts, an input of this run'),
])
def test_launch_refuses_a_logs_folder_that_breaks_the_rule(tmp_path, capsys, logs, match):
    (tmp_path / 'file').write_text('x')
    (tmp_path / 'hosts').write_text('127.0.0.1\n')
    refused_untouched(capsys, tmp_path, 'launch', '-n', '1', '--hosts', tmp_path / 'hosts',
                      '--logs', logs and tmp_path / logs, '--', 'finetune', match=match)
