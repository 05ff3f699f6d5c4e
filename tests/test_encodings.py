"""Encodings and their hints (issue 24, kind 8): UTF-16 without a byte-order mark is named as
such wherever a file is read, and the option the hint names exists where it is given."""
import pytest
from tiny_data import TINY_RUN, classify_tsv

from gluon_bertft import FinetuneConfig, cli, finetune
from gluon_bertft.common.errors import DataError
from gluon_bertft.common.files import read_text


def utf16(path, text, order='le'):
    path.write_bytes(text.encode(f'utf-16-{order}'))  # no byte-order mark
    return str(path)


@pytest.mark.parametrize('order', ['le', 'be'])
def test_nul_bytes_are_named_as_utf16(tmp_path, order):
    path = utf16(tmp_path / 'x.tsv', 'sentence\tlabel\na good film\tpos\n', order)
    with pytest.raises(DataError, match=rf'x\.tsv:1: a NUL byte at column \d: the file looks like '
                       rf'UTF-16 without a byte-order mark \(give --encoding utf-16-{order}\)'):
        read_text(path)
    assert read_text(path, f'utf-16-{order}').startswith('sentence\tlabel')


def test_a_utf16_training_file_trains_with_the_encoding_the_error_names(tmp_path):
    text = (tmp_path / 'src.tsv')
    classify_tsv(text)
    train = utf16(tmp_path / 'train.tsv', text.read_text(encoding='utf-8'))
    with pytest.raises(DataError, match='give --encoding utf-16-le'):
        finetune(FinetuneConfig(task='classify', train=train, epochs=1, **TINY_RUN))
    finetune(FinetuneConfig(task='classify', train=train, epochs=1, encoding='utf-16-le',
                            out=str(tmp_path / 'run'), **TINY_RUN), log=lambda *a: None)


@pytest.mark.slow
def test_predict_and_evaluate_take_the_encoding_their_message_names(tmp_path, capsys):
    text = tmp_path / 'src.tsv'
    classify_tsv(text)
    run = tmp_path / 'run'
    finetune(FinetuneConfig(task='classify', train=str(text), epochs=1, out=str(run), **TINY_RUN),
             log=lambda *a: None)
    data = utf16(tmp_path / 'data.tsv', text.read_text(encoding='utf-8'))
    model = str(run / 'model')
    assert cli.main(['evaluate', '--model', model, '--data', data, '--devices', 'cpu']) == 2
    assert 'give --encoding utf-16-le' in capsys.readouterr().err
    assert cli.main(['evaluate', '--model', model, '--data', data, '--devices', 'cpu',
                     '--encoding', 'utf-16-le']) == 0
    out = str(tmp_path / 'p.jsonl')
    assert cli.main(['predict', '--model', model, '--data', data, '--output', out,
                     '--devices', 'cpu', '--encoding', 'utf-16-le']) == 0
    assert cli.main(['predict', '--model', model, '--text', 'a film', '--encoding', 'utf-16-le']) == 2
    assert '--encoding: applies with --data' in capsys.readouterr().err


def test_launch_says_its_host_file_is_utf8(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hosts = utf16(tmp_path / 'hosts', '127.0.0.1\n')
    assert cli.main(['launch', '-n', '1', '--hosts', hosts, '--', 'finetune']) == 2
    err = capsys.readouterr().err
    assert 'launch reads the host file as UTF-8: save it so' in err and '--encoding' not in err
