"""Early stopping (``--patience``, ``--min-delta``): counted on the validation split only,
kept across a resume, an error without a validation split."""
import numpy as onp
import pytest
from test_resume import CrashAfter, params_of, run, scripted_validation
from tiny_data import TINY_RUN, task_files

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.cli import main
from gluon_bertft.common.errors import ConfigError
from gluon_bertft.training.callbacks import epochs_without_improvement

VALID = dict(valid_fraction=0.25)


@pytest.mark.parametrize('values, min_delta, expected', [
    ([], 0.0, 0),
    ([0.5, 0.6, 0.6, 0.59], 0.0, 2),  # equal is no improvement
    ([0.5, 0.52, 0.6], 0.05, 0),  # 0.52 is not > 0.55, 0.6 is
    ([0.5, 0.52, 0.54], 0.05, 2),
    ([float('nan'), 0.3, float('nan')], 0.0, 1),  # nan never improves
])
def test_epochs_without_improvement(values, min_delta, expected):
    assert epochs_without_improvement(values, min_delta) == expected


@pytest.mark.slow
def test_patience_stops_the_run_and_keeps_the_best_epoch(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.8, 0.7, 0.75, None])
    lines = []
    net, _, result = run('classify', tmp_path, 'stopped', 6, log=lines.append, patience=2, **VALID)
    assert result['valid'] == [0.5, 0.8, 0.7, 0.75] and len(result['train_loss']) == 4
    assert result['stopped_epoch'] == 4 and result['best_epoch'] == 2
    assert ('early stopping after epoch 4: valid accuracy has not improved by more than 0 for '
            '2 epochs') in lines
    assert 'kept epoch 2 (best valid accuracy 0.800)' in lines
    assert 'test' in result  # the test set is scored once, at the end


@pytest.mark.slow
def test_min_delta_counts_small_gains_as_none(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.51, 0.52, None])
    _, _, result = run('classify', tmp_path, 'delta', 5, patience=2, min_delta=0.05, **VALID)
    assert result['valid'] == [0.5, 0.51, 0.52] and result['stopped_epoch'] == 3


@pytest.mark.slow
def test_without_patience_every_epoch_runs(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.9, 0.1, 0.1, None])
    _, _, result = run('classify', tmp_path, 'all', 3, **VALID)
    assert len(result['valid']) == 3 and 'stopped_epoch' not in result


@pytest.mark.slow
def test_a_resumed_run_stops_where_an_unbroken_one_does(tmp_path, monkeypatch):
    """Best at epoch 1, patience 2: an unbroken run stops after epoch 3. Interrupted after
    epoch 2's checkpoint and resumed, it stops after epoch 3 too, with the same parameters;
    resumed after the stop, it trains no more."""
    options = dict(patience=2, **VALID)
    scripted_validation(monkeypatch, [0.9, 0.2, 0.1, None])
    unbroken, _, expected = run('classify', tmp_path, 'unbroken', 6, **options)
    assert expected['stopped_epoch'] == 3
    scripted_validation(monkeypatch, [0.9, 0.2])
    crash = CrashAfter(monkeypatch, 4)  # saves (0, 2), (1, 0), (1, 1), (2, 0), then a crash
    with pytest.raises(KeyboardInterrupt):
        run('classify', tmp_path, 'broken', 6, **options)
    assert crash.saved[-1] == (2, 0)
    scripted_validation(monkeypatch, [0.1, None])
    net, _, result = run('classify', tmp_path, 'broken', 6, resume=True, **options)
    assert result['valid'] == [0.9, 0.2, 0.1] and result['stopped_epoch'] == 3
    for name, value in params_of(unbroken).items():
        onp.testing.assert_allclose(params_of(net)[name], value, rtol=0, atol=1e-6, err_msg=name)
    scripted_validation(monkeypatch, [None])
    lines = []
    again, _, _ = run('classify', tmp_path, 'broken', 6, resume=True, log=lines.append, **options)
    assert 'early stopping: stopped after epoch 3 before the interruption' in lines
    assert not any(line.startswith('epoch ') for line in lines)


@pytest.mark.slow
def test_two_devices_stop_like_one(tmp_path, monkeypatch):
    results = []
    for devices in ('cpu:0', 'cpu:0,cpu:1'):
        scripted_validation(monkeypatch, [0.9, 0.2, 0.1, None])
        _, _, result = run('classify', tmp_path, devices.replace(',', '_'), 6,
                           **dict(VALID, patience=2, devices=devices, dropout=0.0))
        results.append(result)
    assert [r['stopped_epoch'] for r in results] == [3, 3]
    assert results[0]['train_loss'] == pytest.approx(results[1]['train_loss'], abs=1e-4)


@pytest.mark.parametrize('options, match', [
    (dict(patience=2), r'--patience: early stopping needs a validation split'),
    (dict(min_delta=0.1), r'--min-delta: applies with --patience'),
    (dict(patience=2, valid_fraction=0.2, valid='v.tsv'), r'--valid: not with --valid-fraction'),
    (dict(patience=0, valid_fraction=0.2), r'--patience 0: must be a positive integer'),
])
def test_bad_early_stopping_options_are_refused(tmp_path, options, match):
    config = FinetuneConfig(task='classify', out=str(tmp_path / 'run'),
                            **dict(TINY_RUN, **task_files('classify', tmp_path), **options))
    with pytest.raises(ConfigError, match=match):
        finetune(config)
    assert not (tmp_path / 'run').exists()


def test_the_cli_refuses_patience_without_validation(tmp_path, capsys):
    files = task_files('classify', tmp_path)
    code = main(['finetune', '--task', 'classify', '--train', files['train'], '--patience', '2',
                 '--out', str(tmp_path / 'run')])
    assert code == 2
    assert 'error: --patience: early stopping needs a validation split' in capsys.readouterr().err


@pytest.mark.slow
def test_a_validation_file_is_read_in_the_training_format(tmp_path):
    files = task_files('classify', tmp_path)
    _, _, result = finetune(FinetuneConfig(task='classify', epochs=2, valid=files['train'],
                                           **dict(TINY_RUN, **files)), log=lambda *a: None)
    assert len(result['valid']) == 2 and result['valid_metric'] == 'accuracy'
