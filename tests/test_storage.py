"""Atomic writes, JSON files, training curves and the saved-model folder layout."""
import json
import os

import mxnet as mx
import pytest
from conftest import tiny_bert

from gluon_bertft.common import storage
from gluon_bertft.common.errors import DataError, PretrainedError
from gluon_bertft.common.storage import atomic_path
from gluon_bertft.models.heads import BERTClassifier


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / 'out.json'
    target.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp, open(tmp, 'w') as f:
            f.write('half')
            raise RuntimeError('disk full')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.json']


def test_a_failed_write_inside_a_folder_names_where_it_goes(tmp_path):
    """A write inside a folder being written (a model inside a run's OUT) named the hidden
    temporary (``.out.PID.x/new/model``); it names ``out/model``, and so does the cause MXNet
    gives with its own path."""
    import errno
    from gluon_bertft.common.errors import WriteError
    out = str(tmp_path / 'out')
    with pytest.raises(WriteError) as e:
        with atomic_path(out) as tmp:
            os.makedirs(tmp)
            with atomic_path(os.path.join(tmp, 'model')):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(e.value).startswith(os.path.join(out, 'model') + ': could not be written')
    with pytest.raises(WriteError) as e:
        with atomic_path(out) as tmp:
            raise mx.base.MXNetError(f'[io] write {tmp}/model-0000.params: No space left on device')
    assert str(e.value) == (f'{out}: could not be written ([io] write {out}/model-0000.params: '
                            'No space left on device); nothing of it was kept')
    assert os.listdir(tmp_path) == []


def test_atomic_path_replaces_a_folder_whole(tmp_path):
    target = tmp_path / 'model'
    os.makedirs(target)
    (target / 'stale.txt').write_text('from the last run')
    with atomic_path(str(target)) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, 'new.txt'), 'w') as f:
            f.write('new')
    assert os.listdir(target) == ['new.txt']
    assert os.listdir(tmp_path) == ['model']
    with pytest.raises(KeyError):
        with atomic_path(str(target)) as tmp:
            os.makedirs(tmp)
            raise KeyError('interrupted')
    assert os.listdir(target) == ['new.txt'] and os.listdir(tmp_path) == ['model']


def test_json_round_trip_and_errors_name_the_file(tmp_path):
    path = str(tmp_path / 'sub' / 'a.json')
    storage.write_json(path, {'x': [1, 2], 'y': 'é'})
    assert storage.read_json(path) == {'x': [1, 2], 'y': 'é'}
    (tmp_path / 'bad.json').write_text('{\n "x": }')
    with pytest.raises(PretrainedError, match=r'bad\.json: invalid JSON at line 2'):
        storage.read_json(str(tmp_path / 'bad.json'))
    with pytest.raises(DataError, match=r'bad\.json: invalid JSON'):
        storage.read_json(str(tmp_path / 'bad.json'), error=DataError)
    (tmp_path / 'latin.json').write_bytes('"caf\xe9"'.encode('latin-1'))
    with pytest.raises(PretrainedError, match=r'latin\.json: not UTF-8 text'):
        storage.read_json(str(tmp_path / 'latin.json'))
    with pytest.raises(PretrainedError, match=r'missing\.json: cannot read'):
        storage.read_json(str(tmp_path / 'missing.json'))


def test_save_model_writes_the_one_layout(tmp_path, vocab):
    net = BERTClassifier(tiny_bert(len(vocab)), 3)
    net.output.initialize(ctx=[mx.cpu()])
    path = storage.save_model(net, vocab, str(tmp_path / 'model'), dict(task='snli', max_len=64))
    assert sorted(os.listdir(path)) == ['config.json', 'model.params', 'vocab.json']
    assert json.loads((tmp_path / 'model' / 'vocab.json').read_text()) == vocab.idx_to_token
    assert storage.params_file(path) == os.path.join(path, 'model.params')
    os.rename(os.path.join(path, 'model.params'), os.path.join(path, 'classifier.params'))
    assert storage.params_file(path) == os.path.join(path, 'classifier.params')  # older versions
    os.remove(os.path.join(path, 'classifier.params'))
    with pytest.raises(PretrainedError, match=r'model: not a saved model \(no model.params\)'):
        storage.params_file(path)


def test_plot_history_draws_every_curve(tmp_path, monkeypatch):
    drawn = {}
    real = storage.save_figure

    def save_figure(fig, path):
        drawn[path] = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
        real(fig, path)
    monkeypatch.setattr(storage, 'save_figure', save_figure)
    history = dict(train_loss=[0.9, 0.7], train_acc=[0.5, 0.6], test_acc=[0.55, 0.6],
                   valid=[0.4, 0.5], valid_metric='f1')
    path = str(tmp_path / 'curve.png')
    storage.plot_history(history, path)
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert drawn[path] == ['train loss', 'train acc', 'test acc', 'valid f1']
    storage.plot_history(dict(history, valid=[]), path)  # no validation split: no valid curve
    assert drawn[path] == ['train loss', 'train acc', 'test acc']
