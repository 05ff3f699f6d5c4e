"""The one resumable training state of fine-tuning and pretraining: save, check, load."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from conftest import tiny_bert
from mxnet import autograd

from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.models.heads import BERTClassifier
from gluon_bertft.training import trainer_state
from gluon_bertft.training.checkpoint import Checkpoint
from gluon_bertft.training.trainer import make_trainer

RUN = dict(task='classify', batch_size=16, seed=0, text_columns=['sentence'])


def model(seed):
    net = BERTClassifier(tiny_bert(30, seed=seed), 2)
    net.output.initialize(mx.init.Normal(0.2))
    trainer = make_trainer(net, 1e-3)
    tokens = mx.np.array(onp.arange(12).reshape(2, 6) % 30, dtype='int32')
    with autograd.record():
        loss = net((tokens, mx.np.zeros_like(tokens), mx.np.array([6.0, 4.0]))).sum()
    loss.backward()
    trainer.step(2)  # Adam now has moments and an update count to save
    return net, trainer


def params_of(net):
    return {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}


def test_save_then_load_restores_parameters_optimizer_and_state(tmp_path):
    net, trainer = model(seed=0)
    ckpt = Checkpoint(str(tmp_path / 'checkpoint'), RUN)
    assert not ckpt.exists()
    ckpt.save(net, trainer, epoch=1, batch=2, history={'train_loss': [0.5]})
    assert ckpt.exists()
    # no pickle: the optimizer's moments as arrays, its counts as JSON (issue 24, kind 13)
    assert sorted(os.listdir(ckpt.path)) == ['model.params', 'optimizer.json', 'optimizer.params',
                                             'state.json']
    other, other_trainer = model(seed=1)
    state = Checkpoint(ckpt.path, dict(RUN)).load(other, other_trainer, [mx.cpu()], lr=5e-4)
    assert state == dict(epoch=1, batch=2, history={'train_loss': [0.5]}, run=RUN)
    expected = params_of(net)
    for name, value in params_of(other).items():
        onp.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert other_trainer.learning_rate == 5e-4
    assert other_trainer.optimizer._index_update_count == trainer.optimizer._index_update_count
    assert Checkpoint(None, RUN).exists() is False  # checkpoints off


def test_other_settings_are_named(tmp_path):
    net, trainer = model(seed=0)
    ckpt = Checkpoint(str(tmp_path / 'c'), RUN)
    ckpt.save(net, trainer, epoch=0, batch=1, history={})
    changed = dict(RUN, batch_size=32, max_len=64)
    with pytest.raises(PretrainedError, match=r"written with batch_size=16 \(now 32\); max_len "
                                              r"unset \(now 64\)\. Use the same settings"):
        Checkpoint(ckpt.path, changed).load(net, trainer, [mx.cpu()])


def test_a_broken_checkpoint_is_a_clear_error_and_a_failed_save_keeps_the_last(tmp_path,
                                                                               monkeypatch):
    net, trainer = model(seed=0)
    ckpt = Checkpoint(str(tmp_path / 'c'), RUN)
    ckpt.save(net, trainer, epoch=0, batch=1, history={})
    with pytest.raises(TypeError):  # state.json fails after model.params was written
        ckpt.save(net, trainer, epoch=0, batch=2, history=dict(bad=object()))
    def broken(trainer, folder):
        raise RuntimeError('disk full')
    monkeypatch.setattr(trainer_state, 'save', broken)
    with pytest.raises(RuntimeError):
        ckpt.save(net, trainer, epoch=0, batch=3, history={})
    monkeypatch.undo()
    assert json.loads(open(os.path.join(ckpt.path, 'state.json')).read())['batch'] == 1
    assert os.listdir(tmp_path) == ['c']
    with open(os.path.join(ckpt.path, 'model.params'), 'wb') as f:
        f.write(b'not parameters')
    with pytest.raises(PretrainedError, match=r'c: unreadable checkpoint .*delete it to start over'):
        ckpt.load(net, trainer, [mx.cpu()])
    with open(os.path.join(ckpt.path, 'state.json'), 'w') as f:
        json.dump({'epoch': 1}, f)
    with pytest.raises(PretrainedError, match=r'state\.json: not a checkpoint state \(no "run" object\)'):
        ckpt.load(net, trainer, [mx.cpu()])
    with open(os.path.join(ckpt.path, 'state.json'), 'w') as f:
        f.write('{"run": ')
    with pytest.raises(PretrainedError, match=r'state\.json: invalid JSON at line 1'):
        ckpt.load(net, trainer, [mx.cpu()])


def test_a_pickled_optimizer_state_needs_trust(tmp_path):
    """A checkpoint of 0.2 (trainer.states, a pickle) resumes only when trusted."""
    net, trainer = model(seed=0)
    ckpt = Checkpoint(str(tmp_path / 'c'), RUN)
    ckpt.save(net, trainer, epoch=0, batch=1, history={})
    for name in (trainer_state.ARRAYS, trainer_state.COUNTS):
        os.remove(os.path.join(ckpt.path, name))
    trainer.save_states(os.path.join(ckpt.path, 'trainer.states'))  # as 0.2 wrote it
    other, other_trainer = model(seed=1)
    with pytest.raises(PretrainedError, match=r'c: its optimizer state is a pickle \(trainer\.states'
                       r', written before 0\.3\).* --trust-checkpoint'):
        ckpt.load(other, other_trainer, [mx.cpu()])
    ckpt.load(other, other_trainer, [mx.cpu()], trusted=True)
    assert other_trainer.optimizer._index_update_count == trainer.optimizer._index_update_count
