"""``predict --data -`` and ``evaluate --data -``: rows in the task's format on standard input,
results (with ``--output -``) as JSON lines on standard output, errors naming ``<stdin>:LINE``
(issue 24, kind 10's last sentence)."""
import io
import json
import os
import sys

import pytest

from gluon_bertft.common.files import Stdin, read_stdin
from tiny_data import cli_run, refused, snli_lines, untrained_model


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Saved snli and classify model folders (untrained)."""
    return {name: untrained_model(name, tmp_path_factory.mktemp(name))
            for name in ('snli', 'classify')}


def feed(monkeypatch, text):
    """Standard input holding ``text`` (UTF-8), as the process would see it."""
    monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(text.encode('utf-8'))))


def records(out):
    return [json.loads(line) for line in out.splitlines()]


def test_stdin_is_named_and_its_format_told_by_its_first_character():
    assert Stdin(b'  {"a": 1}\n') == '<stdin>' and Stdin(b'\n{"a": 1}').extension == '.jsonl'
    assert Stdin(b'sentence\tlabel\n').extension == ''
    assert read_stdin(io.BytesIO(b'x\ty\n')).data == b'x\ty\n'


def test_predict_reads_snli_lines_from_stdin(tmp_path, monkeypatch, capsys, models):
    lines = open(snli_lines(tmp_path / 'd.jsonl', 0, 5), encoding='utf-8').read()
    feed(monkeypatch, lines)
    from gluon_bertft import cli
    capsys.readouterr()
    assert cli.main(['predict', '--model', models['snli'], '--data', '-', '--output', '-',
                     '--devices', 'cpu']) == 0
    out, err = capsys.readouterr()
    got = records(out)
    assert [r['where'] for r in got] == [f'<stdin>#{i}' for i in range(1, 6)]
    assert all(r['label'] in ('entailment', 'contradiction', 'neutral') for r in got)
    assert 'wrote 5 predictions to standard output' in err
    assert not os.path.exists('-')


def test_predict_from_stdin_to_a_file_matches_the_file(tmp_path, monkeypatch, capsys, models):
    data = tmp_path / 'data.tsv'
    data.write_text('sentence\tlabel\na lovely film\tpos\nan awful day\tneg\n', encoding='utf-8')
    feed(monkeypatch, data.read_text(encoding='utf-8'))
    assert cli_run(capsys, 'predict', '--model', models['classify'], '--data', '-', '--output',
                   tmp_path / 'in.jsonl', '--devices', 'cpu')[0] == 0
    assert cli_run(capsys, 'predict', '--model', models['classify'], '--data', data, '--output',
                   tmp_path / 'file.jsonl', '--devices', 'cpu')[0] == 0
    from_stdin, from_file = (records((tmp_path / f).read_text(encoding='utf-8'))
                             for f in ('in.jsonl', 'file.jsonl'))
    assert [r['where'] for r in from_stdin] == ['<stdin>:2', '<stdin>:3']
    for a, b in zip(from_stdin, from_file):
        assert a['probabilities'] == b['probabilities']


def test_evaluate_reads_stdin(tmp_path, monkeypatch, capsys, models):
    feed(monkeypatch, 'sentence\tlabel\na lovely film\tpos\nan awful day\tneg\n')
    from gluon_bertft import cli
    assert cli.main(['evaluate', '--model', models['classify'], '--data', '-',
                     '--devices', 'cpu']) == 0
    assert 'accuracy' in capsys.readouterr().out


@pytest.mark.parametrize('task, text, match', [
    ('classify', 'sentence\tlabel\na film\tpos\na\tlong\tfilm\tneg\n',
     r'<stdin>:3: 4 fields, but the header has 2'),
    ('classify', '', r'<stdin>: the file is empty'),
    ('snli', '{"gold_label": "neutral", "sentence1": "A", "sentence2": "B"}\n{"sentence1": 3}\n',
     r'<stdin>:2: '),
    ('snli', 'neutral\tA man\tA dog\n', r'<stdin>:1: not an SNLI \.txt header'),
    ('classify', 'sentence\tlabel\n\udcff\n', r'<stdin>:2: .*not valid utf-8'),
])
def test_bad_stdin_names_stdin_and_line(tmp_path, monkeypatch, capsys, models, task, text, match):
    raw = text.encode('utf-8', 'surrogateescape')
    monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(raw)))
    refused(capsys, 'predict', '--model', models[task], '--data', '-', '--output', '-',
            '--devices', 'cpu', match=match)
