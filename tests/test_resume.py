"""Exact resume of fine-tuning, for every kind of task: an interrupted run continued with
``resume=True`` ends with the parameters and history of an uninterrupted one.

Runs are tiny (``tiny_data.TINY_RUN``: bert.tiny from random weights, 48 training examples,
3 batches an epoch, dropout 0.1 on) and checkpoint every 2 steps: saves at (epoch 0, batch 2),
(1, 0) after the first epoch, (1, 1) and (2, 0).
"""
import numpy as onp
import pytest
from tiny_data import TINY_RUN, once_per_task, task_files

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common.errors import ConfigError, PretrainedError
from gluon_bertft.training.checkpoint import Checkpoint

TASKS = ('snli', 'classify', 'tag', 'qa')


def quiet(*args):
    pass


def params_of(net):
    return {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}


def run(task, folder, out, epochs, log=quiet, **options):
    config = FinetuneConfig(task=task, epochs=epochs, out=str(folder / out), checkpoint_every=2,
                            **dict(TINY_RUN, **task_files(task, folder), **options))
    return finetune(config, log=log)


@pytest.fixture(scope='module')
def unbroken(tmp_path_factory):
    """The uninterrupted 2-epoch run of each task: ``(folder, parameters, result)``, made once."""
    def make(task, folder):
        net, _, result = run(task, folder, 'unbroken', 2)
        return folder, params_of(net), result
    return once_per_task(tmp_path_factory, make)


def assert_same_run(net, result, expected_params, expected_result, resumed_in_epoch=None):
    """Same parameters, test metrics and per-epoch history. The train loss and accuracy of an
    epoch resumed in its middle cover only the batches trained after the resumption (the
    running sums are not checkpointed)."""
    got = params_of(net)
    assert got.keys() == expected_params.keys()
    for name, value in expected_params.items():
        onp.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)
    for key in ('test_acc', 'test'):
        assert result[key] == pytest.approx(expected_result[key], abs=1e-6), key
    for key in ('train_loss', 'train_acc'):
        assert len(result[key]) == len(expected_result[key])
        for epoch, (a, b) in enumerate(zip(result[key], expected_result[key])):
            if epoch != resumed_in_epoch:
                assert a == pytest.approx(b, abs=1e-6), (key, epoch)


class CrashAfter:
    """Make :meth:`Checkpoint.save` raise right after writing its ``n``-th checkpoint."""

    def __init__(self, monkeypatch, n):
        self.saved, real = [], Checkpoint.save

        def save(ckpt, net, trainer, **state):
            real(ckpt, net, trainer, **state)
            self.saved.append((state['epoch'], state['batch']))
            if len(self.saved) == n:
                raise KeyboardInterrupt(f'crash after the checkpoint at {self.saved[-1]}')
        monkeypatch.setattr(Checkpoint, 'save', save)


@pytest.mark.slow
@pytest.mark.parametrize('task', TASKS)
def test_resume_after_an_epoch_equals_an_unbroken_run(task, unbroken):
    folder, expected, expected_result = unbroken(task)
    first, _, _ = run(task, folder, 'epochwise', 1)
    assert any(not onp.array_equal(v, expected[k]) for k, v in params_of(first).items())
    lines = []
    net, _, result = run(task, folder, 'epochwise', 2, resume=True, log=lines.append)
    assert f'resumed from {folder / "epochwise" / "checkpoint"}: 1 epochs and 0 batches done' in lines
    assert sum(line.startswith('epoch ') for line in lines) == 1  # only epoch 2 was trained
    assert_same_run(net, result, expected, expected_result)


@pytest.mark.slow
@pytest.mark.parametrize('task', TASKS)
def test_resume_mid_epoch_equals_an_unbroken_run(task, unbroken, monkeypatch):
    folder, expected, expected_result = unbroken(task)
    crash = CrashAfter(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(task, folder, 'midway', 2)
    monkeypatch.undo()
    assert crash.saved == [(0, 2)]  # 2 of the 3 batches of epoch 1 done
    lines = []
    net, _, result = run(task, folder, 'midway', 2, resume=True, log=lines.append)
    assert f'resumed from {folder / "midway" / "checkpoint"}: 0 epochs and 2 batches done' in lines
    assert_same_run(net, result, expected, expected_result, resumed_in_epoch=0)


def test_resume_twice_in_the_second_epoch(unbroken, monkeypatch):
    """Crash in epoch 2, after the (1, 1) checkpoint, then resume from there."""
    folder, expected, expected_result = unbroken('classify')
    crash = CrashAfter(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run('classify', folder, 'late', 2)
    monkeypatch.undo()
    assert crash.saved == [(0, 2), (1, 0), (1, 1)]
    net, _, result = run('classify', folder, 'late', 2, resume=True)
    assert_same_run(net, result, expected, expected_result, resumed_in_epoch=1)


def test_resume_refuses_other_settings_and_a_finished_run(unbroken):
    folder, _, _ = unbroken('classify')
    with pytest.raises(PretrainedError, match=r'written with batch_size=16 \(now 8\)'):
        run('classify', folder, 'unbroken', 3, resume=True, batch_size=8)
    with pytest.raises(PretrainedError, match=r"written with .*seed=0 \(now 1\)"):
        run('classify', folder, 'unbroken', 3, resume=True, seed=1)
    with pytest.raises(ConfigError, match='all 2 epochs are done; ask for more --epochs'):
        run('classify', folder, 'unbroken', 2, resume=True)
    # more epochs and another learning rate are allowed
    _, _, result = run('classify', folder, 'unbroken', 3, resume=True, lr=5e-5)
    assert len(result['train_loss']) == 3


def test_resume_without_a_checkpoint_starts_over(unbroken):
    folder, expected, expected_result = unbroken('classify')
    net, _, result = run('classify', folder, 'fresh', 2, resume=True)
    assert_same_run(net, result, expected, expected_result)


def scripted_validation(monkeypatch, values):
    """Make the task's score report ``values`` in turn as the validation metric (None: the
    real score, e.g. the test set's at the end of a run)."""
    from gluon_bertft.tasks.classify import ClassifyTask
    monkeypatch.undo()  # the real score again
    calls, real = iter(values), ClassifyTask.score

    def score(self, outputs, rows, dataset):
        report, value = real(self, outputs, rows, dataset), next(calls)
        return report if value is None else dict(report, accuracy=value)
    monkeypatch.setattr(ClassifyTask, 'score', score)


@pytest.mark.slow
def test_a_resumed_run_keeps_a_best_epoch_from_before_the_interruption(tmp_path, monkeypatch):
    """Validation best at epoch 1; the run stops after epoch 2 and is resumed for epoch 3: the
    parameters of epoch 1 come back from the checkpoint's best.params, as in an unbroken run."""
    options = dict(valid_fraction=0.25)
    scripted_validation(monkeypatch, [0.9, 0.2, 0.1, None])
    unbroken_net, _, unbroken_result = run('classify', tmp_path, 'unbroken', 3, **options)
    assert unbroken_result['best_epoch'] == 1
    scripted_validation(monkeypatch, [0.9, 0.2, None, 0.1, None])
    first, _, _ = run('classify', tmp_path, 'broken', 2, **options)
    assert (tmp_path / 'broken' / 'checkpoint' / 'best.params').is_file()
    lines = []
    net, _, result = run('classify', tmp_path, 'broken', 3, resume=True, log=lines.append, **options)
    assert 'kept epoch 1 (best valid accuracy 0.900)' in lines
    assert result['best_epoch'] == 1 and result['valid'] == [0.9, 0.2, 0.1]
    expected = params_of(unbroken_net)
    for name, value in params_of(net).items():
        onp.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_resume_with_berts_recipe_equals_an_unbroken_run(tmp_path, monkeypatch):
    """Warmup, AdamW decay and clipping (FusedAdam): the pickled optimizer and its schedule
    continue where they stopped."""
    recipe = dict(warmup=0.3, weight_decay=0.01, clip_grad=0.5)
    net, _, expected_result = run('classify', tmp_path, 'unbroken', 2, **recipe)
    expected = params_of(net)
    crash = CrashAfter(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run('classify', tmp_path, 'broken', 2, **recipe)
    monkeypatch.undo()
    assert crash.saved == [(0, 2), (1, 0)]
    net, _, result = run('classify', tmp_path, 'broken', 2, resume=True, **recipe)
    assert_same_run(net, result, expected, expected_result)
