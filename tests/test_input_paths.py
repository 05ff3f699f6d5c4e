"""Every input path is a regular file, or a folder where a folder is expected (issue 24, kind
10): a named pipe or a device given as an input is refused by name instead of blocking forever.
The commands run in subprocesses with a timeout, so that a regression fails instead of hanging."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from tiny_data import classify_tsv

from gluon_bertft.common.errors import DataError, PretrainedError
from gluon_bertft.common.files import check_regular

pytestmark = pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='no named pipes here')


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, '-m', 'gluon_bertft', *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / 'pipe'
    os.mkfifo(path)
    return path


def test_check_regular(tmp_path, fifo):
    (tmp_path / 'f.txt').write_text('x')
    check_regular(tmp_path / 'f.txt')
    check_regular(tmp_path / 'absent')  # the opener names a missing file
    check_regular(tmp_path, folder_ok=True)
    with pytest.raises(DataError, match='pipe: a named pipe, not a regular file$'):
        check_regular(fifo)
    with pytest.raises(PretrainedError, match='a named pipe, not a regular file or folder'):
        check_regular(fifo, PretrainedError, folder_ok=True)
    with pytest.raises(DataError, match='a folder, not a regular file'):
        check_regular(tmp_path)
    with pytest.raises(DataError, match='/dev/null: a device, not a regular file'):
        check_regular('/dev/null')


@pytest.mark.slow
def test_a_pipe_or_device_as_an_input_is_refused_not_waited_on(tmp_path, fifo):
    train = classify_tsv(tmp_path / 't.tsv')
    out = tmp_path / 'o'
    cases = [
        (['finetune', '--task', 'classify', '--train', train, '--pretrained', fifo, '--out', out],
         f'{fifo}: a named pipe, not a regular file or folder'),
        (['finetune', '--task', 'classify', '--train', fifo, '--pretrained', 'random', '--out', out],
         f'{fifo}: a named pipe, not a regular file'),
        (['finetune', '--train', '/dev/zero', '--out', out], '/dev/zero: a device'),
    ]
    for args, message in cases:
        done = cli(*args, '--devices', 'cpu')
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr[-500:])
    assert not out.exists()


@pytest.mark.slow
def test_a_pipe_inside_a_model_folder_is_refused(tmp_path):
    out = tmp_path / 'run'
    train = classify_tsv(tmp_path / 't.tsv')
    done = cli('finetune', '--task', 'classify', '--train', train, '--pretrained', 'random',
               '--preset', 'bert.tiny', '--max-len', 32, '--batch-size', 16, '--epochs', 1,
               '--devices', 'cpu', '--out', out)
    assert done.returncode == 0, done.stderr[-500:]
    data = tmp_path / 'data'
    os.mkfifo(data)
    done = cli('predict', '--model', out / 'model', '--data', data, '--output', tmp_path / 'p.jsonl',
               '--devices', 'cpu')
    assert done.returncode == 2 and f'{data}: a named pipe' in done.stderr, done.stderr[-500:]
    params = out / 'model' / 'model.params'
    params.unlink()
    os.mkfifo(params)
    done = cli('predict', '--model', out / 'model', '--text', 'a fine film', '--devices', 'cpu')
    assert done.returncode == 2 and 'model.params: a named pipe' in done.stderr, done.stderr[-500:]
