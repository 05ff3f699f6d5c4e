"""Full or read-only disks mid-run (issue 24, kind 4), by making the one writer fail (an
injected ENOSPC), not by filling a disk: one error naming the path, outputs together or not
at all, and a killed writer's temporaries removed by the next write, never a live one's."""
import errno
import json
import os
import subprocess
import sys

import mxnet as mx
import pytest
from tiny_data import TINY_RUN, task_files

from gluon_bertft import FinetuneConfig, cli, finetune
from gluon_bertft.common import storage
from gluon_bertft.common.errors import WriteError
from gluon_bertft.training.checkpoint import Checkpoint


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'result.json'
    storage.write_json(str(path), {'old': 1})
    monkeypatch.setattr(json, 'dump', full_disk)
    with pytest.raises(WriteError, match=rf'{path}: could not be written \(No space left on '
                       r'device \(free some space and rerun\)\); nothing of it was kept'):
        storage.write_json(str(path), {'new': 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {'old': 1}
    assert sorted(os.listdir(tmp_path)) == ['result.json']  # no temporary left


def test_mxnets_own_write_error_is_named_too(tmp_path, monkeypatch):
    def no_space(self, path, *a, **k):
        raise mx.MXNetError('Check failed: fo->Write: No space left on device')
    monkeypatch.setattr(mx.gluon.Block, 'save_parameters', no_space)
    net = mx.gluon.nn.Dense(2, in_units=2)
    net.initialize()
    with pytest.raises(WriteError, match=r'model: could not be written \(Check failed: '
                       r'fo->Write: No space left on device\)'):
        storage.save_model(net, type('V', (), {'idx_to_token': ['a']})(), str(tmp_path / 'model'),
                           {})
    assert os.listdir(tmp_path) == []


def test_a_run_whose_checkpoint_cannot_be_written_stops_with_one_clear_error(tmp_path, capsys,
                                                                             monkeypatch):
    files = task_files('classify', tmp_path)
    monkeypatch.setattr(Checkpoint, 'save', lambda *a, **k: storage.write_json(
        str(tmp_path / 'run' / 'checkpoint'), full_disk()))
    args = ['finetune', '--task', 'classify', '--train', files['train'], '--pretrained', 'random',
            '--preset', 'bert.tiny', '--max-len', '32', '--batch-size', '16', '--epochs', '1',
            '--checkpoint-every', '1', '--devices', 'cpu', '--out', str(tmp_path / 'run')]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count('error: ') == 1 and 'No space left on device' in err, err
    assert not (tmp_path / 'run' / 'model').exists()


def test_a_killed_writers_temporaries_go_and_a_live_ones_stay(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()  # a pid that ended
    stale = tmp_path / f'.checkpoint.{dead}.abc123'
    live = tmp_path / f'.checkpoint.{os.getppid()}.def456'  # pytest's parent: running
    other = tmp_path / '.model.abc'  # not ours (no pid): left alone
    for folder in (stale, live, other):
        (folder / 'new').mkdir(parents=True)
    with storage.atomic_path(str(tmp_path / 'checkpoint')) as tmp:
        os.makedirs(tmp)
        assert os.path.basename(os.path.dirname(tmp)).startswith(f'.checkpoint.{os.getpid()}.')
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / 'checkpoint').is_dir()


def test_a_run_after_a_killed_one_cleans_its_leftovers(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    files = task_files('classify', tmp_path)
    out = tmp_path / 'run'
    (out / f'.checkpoint.{dead}.x1' / 'new').mkdir(parents=True)  # what kill -9 mid-save leaves
    finetune(FinetuneConfig(task='classify', epochs=1, checkpoint_every=1, out=str(out),
                            **dict(TINY_RUN, **files)), log=lambda *a: None)
    assert not any(name.startswith(f'.checkpoint.{dead}.') for name in os.listdir(out))
