"""The CLI as a user runs it (a subprocess): the book's SNLI run, evaluate, predict, errors."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLE

from gluon_bertft.data.snli import LABELS


def cli(*args, env=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               **(env or {}))
    return subprocess.run([sys.executable, '-m', 'gluon_bertft', *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    result = cli('finetune', '--train', SAMPLE, '--pretrained', 'random', '--preset', 'bert.tiny',
                 '--epochs', '2',
                 '--batch-size', '64', '--max-examples', '600', '--max-len', '64',
                 '--valid-fraction', '0.1', '--devices', 'cpu:0,cpu:1', '--out', str(out))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_finetune_prints_the_books_lines_and_saves(trained):
    out, stdout = trained
    lines = stdout.splitlines()
    assert 'random initialization (no pretraining)' in lines[0]
    assert [l.split(':')[0] for l in lines if l.startswith('epoch')] == ['epoch 1/2', 'epoch 2/2']
    assert any(l.endswith('examples/sec on [cpu(0), cpu(1)]') for l in lines)
    assert sorted(os.listdir(out)) == ['model', 'result.json', 'training_curve.png']
    assert sorted(os.listdir(out / 'model')) == ['config.json', 'model.params', 'vocab.json']
    assert open(out / 'training_curve.png', 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    result = json.loads((out / 'result.json').read_text())
    assert result['valid_metric'] == 'accuracy' and len(result['valid']) == 2
    assert re.search(r'^epoch 2/2: loss [\d.]+, train acc [\d.]+, test acc [\d.]+, valid accuracy '
                     r'[\d.]+$', stdout, re.M)


@pytest.mark.slow
def test_evaluate_and_predict(trained, tmp_path):
    out, _ = trained
    data = tmp_path / 'snli_1.0_test.jsonl'
    data.write_text(''.join(open(SAMPLE).readlines()[-200:]))
    result = cli('evaluate', '--model', str(out / 'model'), '--data', str(data))
    assert result.returncode == 0, result.stderr
    acc = float(re.search(r'^accuracy ([\d.]+), macro_f1 [\d.]+, .* on (.*)$', result.stdout,
                          re.M).group(1))
    assert 0 <= acc <= 1 and result.stdout.rstrip().endswith(f' on {data}')
    result = cli('predict', '--model', str(out / 'model'), '--premise',
                 'A man is playing a guitar .', '--hypothesis', 'A man plays music .')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] in LABELS  # the label, its probability, the next classes


@pytest.mark.slow
def test_offline_book_run_fails_fast_and_says_how_to_use_local_files(tmp_path):
    start = time.time()
    result = cli('finetune', env={'GLUON_BERTFT_DATA': str(tmp_path)})
    assert time.time() - start < 30
    assert result.returncode == 2
    assert 'http://d2l-data.s3-accelerate.amazonaws.com/bert.small.zip' in result.stderr \
        or 'https://nlp.stanford.edu/projects/snli/snli_1.0.zip' in result.stderr
    assert str(tmp_path) in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['--batch-size', '0'], "argument --batch-size: 0: must be a positive integer"),
    (['--train', 'missing.jsonl'], "missing.jsonl"),
    (['--pretrained', 'no/such/model'], "'no/such/model': no such file or directory"),
    (['--dtype', 'float16', '--devices', 'cpu'], '--dtype float16 needs GPUs'),
])  # the other options that do not apply: test_config.py, in-process
def test_bad_arguments_are_one_clear_line(args, message, tmp_path):
    result = cli('finetune', '--train', SAMPLE, '--out', str(tmp_path / 'o'), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert not os.path.exists(tmp_path / 'o')


def subcommand_parsers():
    import argparse

    from gluon_bertft.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


@pytest.mark.parametrize('name, parser', subcommand_parsers(), ids=lambda x: x if isinstance(x, str) else '')
def test_help_describes_every_option_and_shows_each_default_once(name, parser):
    """Issue 23's first hour: no option without a description, no ``(default: X) (default: Y)``."""
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._expand_help(action) if action.help else ''
        assert text.strip(), f'{name} {action.option_strings or action.dest}: no description'
        assert len(re.findall(r'\(default', text)) <= 1, f'{name} {action.option_strings}: {text}'
    flat = ' '.join(parser.format_help().split())
    assert not re.search(r'\(default[^()]*\)\s*\(default', flat), flat
