"""``--class-weights``: the balanced formula, the weighted losses against hand-computed ones,
the unweighted losses unchanged, every bad weight file named, the tasks without classes
refused, and weighted runs that resume exactly and give the same on two CPU devices as on one."""
import json

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, np, npx
from test_resume import CrashAfter, assert_same_run, params_of, quiet
from tiny_data import TINY_ARGS, TINY_RUN, refused, task_files

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common.errors import ConfigError, DataError, PretrainedError
from gluon_bertft.config import FinetuneConfig as Config
from gluon_bertft.data import conll
from gluon_bertft.tasks import labels, make_task
from gluon_bertft.tasks.classify import ClassifyTask
from gluon_bertft.tasks.tag import TagTask, token_loss


def spam_rows(tmp_path, ham=6, spam=2):
    path = tmp_path / 'sms.tsv'
    path.write_text(''.join(['ham\thello there friend\n'] * ham + ['spam\twin cash now\n'] * spam))
    task = make_task('classify', text_columns=('1',), label_column='0', header=False)
    rows = task.read(str(path))
    task.fit(rows)
    return task, rows, str(path)


def weight_file(tmp_path, text, name='weights.json'):
    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    return str(path)


# --- the weights ---

def test_balanced_is_n_over_classes_times_count(tmp_path):
    task, rows, _ = spam_rows(tmp_path, ham=6, spam=2)
    assert list(task.label_counts(rows)) == [6, 2]
    assert labels.class_weights(task, rows, 'balanced') == [8 / (2 * 6), 8 / (2 * 2)]
    # a class without training examples weighs nothing in training: 1, and k counts the others
    assert labels.balanced([6, 0, 2]) == [8 / 12, 1.0, 2.0]
    assert labels.describe(task, [8 / 12, 2.0]) == 'ham 0.667, spam 2'


def test_balanced_tags_count_the_tagged_words(tmp_path):
    path = tmp_path / 'tags.conll'
    path.write_text('Anna B-PER\nlives O\nin O\nParis B-LOC\n\nNew B-LOC\nYork I-LOC\nis O\nbig O\n')
    task = make_task('tag')
    sentences = conll.read_conll(str(path))
    task.fit(sentences)
    assert task.config['labels'] == ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
    assert list(task.label_counts(sentences)) == [4, 2, 1, 1, 0]
    assert labels.class_weights(task, sentences, 'balanced') == [8 / 16, 8 / 8, 8 / 4, 8 / 4, 1.0]


def test_a_weight_file_by_stored_or_display_name(tmp_path):
    task, rows, _ = spam_rows(tmp_path)
    assert labels.class_weights(task, rows, weight_file(tmp_path, {'spam': 4, 'ham': 0.5})) == [0.5, 4.0]
    task.config['label_names'] = {'spam': 'junk'}
    path = weight_file(tmp_path, {'junk': 3, 'ham': 1})
    assert labels.class_weights(task, rows, path) == [1.0, 3.0]
    with pytest.raises(DataError, match=r"weights\.json: 'junk' is named twice"):
        labels.class_weights(task, rows, weight_file(tmp_path, {'junk': 3, 'spam': 2, 'ham': 1}))


@pytest.mark.parametrize('weights, match', [
    ({'ham': 'heavy', 'spam': 1}, r"the weight of 'ham' is \"heavy\"; give a finite number > 0"),
    ({'ham': True, 'spam': 1}, r"the weight of 'ham' is true"),
    ({'ham': 1, 'spam': 0}, r"the weight of 'spam' is 0;"),
    ({'ham': 1, 'spam': -2.5}, r"the weight of 'spam' is -2.5;"),
    ('{"ham": 1, "spam": NaN}', r"the weight of 'spam' is NaN;"),
    ('{"ham": Infinity, "spam": 1}', r"the weight of 'ham' is Infinity;"),
    ({'ham': 1, 'spam': None}, r"the weight of 'spam' is null;"),
    ({'ham': 1, 'spam': 2, 'eggs': 3}, r"'eggs' is not a label of the model \('ham', 'spam'\)"),
    ({'ham': 1}, r"no weight for 'spam' \(every label of the training data needs one\)"),
    ([1, 2], r'not a JSON object of label -> weight'),
    ({}, r'not a JSON object of label -> weight'),
    ('{"ham": 1,', r'weights\.json: invalid JSON at line 1'),
])
def test_bad_weight_files_name_the_file_and_the_label(tmp_path, weights, match):
    task, rows, _ = spam_rows(tmp_path)
    path = weight_file(tmp_path, weights)
    with pytest.raises(DataError, match=match) as e:
        labels.class_weights(task, rows, path)
    assert path in str(e.value)


@pytest.mark.parametrize('task', ['regress', 'qa'])
@pytest.mark.parametrize('option, value', [('class_weights', 'balanced'), ('label_names', '0=a')])
def test_the_tasks_without_classes_are_refused(task, option, value):
    flag = '--' + option.replace('_', '-')
    with pytest.raises(ConfigError, match=f'{flag}: applies to the tasks with classes .* not --task {task}'):
        Config(task=task, train='t.tsv', **{option: value}).check()


def test_a_missing_weight_file_is_an_option_error():
    with pytest.raises(ConfigError, match='--class-weights w.json: no such file; give balanced'):
        Config(task='classify', train='t.tsv', class_weights='w.json').check()


def test_the_cli_exits_2_on_bad_weights(tmp_path, capsys):
    _, _, train = spam_rows(tmp_path)
    common = ['finetune', '--task', 'classify', '--train', train, '--text-columns', '1',
              '--label-column', '0', '--out', tmp_path / 'run', *TINY_ARGS]
    refused(capsys, *common, '--class-weights', 'heavy', match='--class-weights heavy: no such file')
    path = weight_file(tmp_path, {'ham': 1, 'spam': -1})
    refused(capsys, *common, '--class-weights', path, match=r"weights\.json: the weight of 'spam' is -1")
    refused(capsys, 'finetune', '--task', 'regress', '--train', train, '--class-weights', 'balanced',
            match='--class-weights: applies to the tasks with classes')
    assert not (tmp_path / 'run').exists()


# --- the losses ---

def scores_and_labels(seed=0, n=6, classes=3):
    rng = onp.random.RandomState(seed)
    return rng.randn(n, classes).astype(onp.float32), rng.randint(0, classes, n).astype(onp.float32)


def test_the_weighted_loss_is_the_hand_computed_weighted_cross_entropy():
    y_hat, y = scores_and_labels()
    weights = [0.5, 2.0, 3.0]
    task = make_task('classify')
    task.weigh(weights)
    got = task.loss(np.array(y_hat), np.array(y)).asnumpy()
    log_p = y_hat - onp.log(onp.exp(y_hat).sum(axis=1, keepdims=True))
    expected = [-weights[int(c)] * log_p[i, int(c)] for i, c in enumerate(y)]
    onp.testing.assert_allclose(got, expected, rtol=1e-5)
    assert ClassifyTask.loss is not task.loss  # the class keeps the unweighted loss


def test_the_weighted_token_loss_is_the_hand_computed_sum_over_labelled_tokens():
    rng = onp.random.RandomState(1)
    y_hat = rng.randn(2, 4, 3).astype(onp.float32)
    y = onp.array([[-1, 0, 2, -1], [-1, 1, 1, 0]], dtype=onp.float32)
    weights = [0.25, 4.0, 2.0]
    task = make_task('tag')
    task.weigh(weights)
    got = task.loss(np.array(y_hat), np.array(y)).asnumpy()
    log_p = y_hat - onp.log(onp.exp(y_hat).sum(axis=-1, keepdims=True))
    expected = [sum(-weights[int(c)] * log_p[b, t, int(c)] for t, c in enumerate(y[b]) if c >= 0)
                for b in range(2)]
    onp.testing.assert_allclose(got, expected, rtol=1e-5)


def test_without_weights_the_losses_are_todays_bit_for_bit():
    y_hat, y = np.array(scores_and_labels()[0]), np.array(scores_and_labels()[1])
    for name in ('classify', 'pair-classify', 'snli'):
        task = make_task(name)
        assert 'loss' not in vars(task)  # the class's own gluon loss, untouched
        today = gluon.loss.SoftmaxCrossEntropyLoss()(y_hat, y).asnumpy()
        assert onp.array_equal(task.loss(y_hat, y).asnumpy(), today)
        task.weigh([1.0, 1.0, 1.0])  # weights of 1 change no bit either
        assert onp.array_equal(task.loss(y_hat, y).asnumpy(), today)
    t_hat = np.array(onp.random.RandomState(2).randn(2, 4, 3).astype(onp.float32))
    t = np.array([[-1, 0, 2, -1], [-1, 1, 1, 0]], dtype='float32')
    nll = -npx.pick(npx.log_softmax(t_hat, axis=-1), np.maximum(t, 0), axis=-1)
    today = (nll * (t >= 0).astype('float32')).sum(axis=1).asnumpy()  # token_loss before weights
    assert TagTask.loss(t_hat, t).asnumpy().tolist() == today.tolist()
    assert token_loss(t_hat, t).asnumpy().tolist() == today.tolist()
    weighted = make_task('tag')
    weighted.weigh([1.0, 1.0, 1.0])
    assert weighted.loss(t_hat, t).asnumpy().tolist() == today.tolist()


def test_the_weight_table_lives_on_the_labels_device():
    table = labels.ClassWeights([1.0, 2.0, 3.0])
    for ctx in (mx.cpu(0), mx.cpu(1)):
        w = table.of(np.array([2, 0, -1, 1], ctx=ctx, dtype='float32'))
        assert w.ctx == ctx and w.asnumpy().tolist() == [3.0, 1.0, 1.0, 2.0]
    assert set(table.copies) == {mx.cpu(0), mx.cpu(1)}
    first = table.copies[mx.cpu(0)]
    table.of(np.array([1.0], ctx=mx.cpu(0)))
    assert table.copies[mx.cpu(0)] is first  # one copy per context, made once


def test_no_option_records_nothing_new_in_the_checkpoint():
    run = Config(task='classify', train='t.tsv').run_settings(num_workers=1)
    assert 'class_weights' not in run and 'label_names' not in run  # older checkpoints resume
    run = Config(task='classify', train='t.tsv', class_weights='balanced').run_settings(
        class_weights={'a': 1.0})
    assert run['class_weights'] == {'a': 1.0}


# --- weighted runs: logged, saved, resumed, on two devices ---

def weighted_run(folder, out, epochs, log=quiet, weights=None, **options):
    files = task_files('classify', folder)
    weights = weight_file(folder, weights or {'pos': 3.0, 'neg': 0.5})
    config = FinetuneConfig(task='classify', epochs=epochs, out=str(folder / out), checkpoint_every=2,
                            class_weights=weights, **dict(TINY_RUN, **files, **options))
    return finetune(config, log=log)


@pytest.fixture(scope='module')
def unbroken(tmp_path_factory):
    folder = tmp_path_factory.mktemp('weighted')
    lines = []
    net, _, result = weighted_run(folder, 'unbroken', 2, log=lines.append)
    return folder, params_of(net), result, lines


def test_a_weighted_run_logs_and_saves_its_weights(unbroken):
    folder, _, result, lines = unbroken
    assert 'class weights: neg 0.5, pos 3' in lines
    assert result['class_weights'] == {'neg': 0.5, 'pos': 3.0}
    saved = json.loads((folder / 'unbroken' / 'result.json').read_text())
    assert saved['class_weights'] == {'neg': 0.5, 'pos': 3.0}
    state = json.loads((folder / 'unbroken' / 'checkpoint' / 'state.json').read_text())
    assert state['run']['class_weights'] == {'neg': 0.5, 'pos': 3.0}


def test_weights_change_training(unbroken, tmp_path):
    folder, expected, _, _ = unbroken
    files = task_files('classify', folder)
    net, _, _ = finetune(FinetuneConfig(task='classify', epochs=2, **dict(TINY_RUN, **files)), log=quiet)
    assert any(not onp.allclose(v, expected[k]) for k, v in params_of(net).items())


@pytest.mark.slow
def test_a_resumed_weighted_run_equals_an_unbroken_one(unbroken, monkeypatch):
    folder, expected, expected_result, _ = unbroken
    CrashAfter(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        weighted_run(folder, 'midway', 2)
    monkeypatch.undo()
    lines = []
    net, _, result = weighted_run(folder, 'midway', 2, resume=True, log=lines.append)
    assert any(l.startswith('resumed from') for l in lines)
    assert_same_run(net, result, expected, expected_result, resumed_in_epoch=0)


def test_resume_refuses_other_weights(unbroken):
    folder, _, _, _ = unbroken
    with pytest.raises(PretrainedError, match=r"class_weights=\{'neg': 0\.5, 'pos': 3\.0\} "
                                              r"\(now \{'neg': 0\.5, 'pos': 2\.0\}\)"):
        # the same file, other contents
        weighted_run(folder, 'unbroken', 3, resume=True, weights={'pos': 2.0, 'neg': 0.5})


@pytest.mark.parametrize('task', ['classify', 'tag'])
def test_two_cpu_devices_equal_one(task, tmp_path):
    """Each device's shard weighs its examples with its own copy of the table."""
    files = task_files(task, tmp_path)
    weights = (weight_file(tmp_path, {'pos': 3.0, 'neg': 0.5}) if task == 'classify'
               else 'balanced')  # the tiny tag data has unequal tag counts
    params = []
    for devices in ('cpu:0,cpu:1', 'cpu'):
        lines = []
        options = dict(TINY_RUN, **files, devices=devices, dropout=0.0)
        net, _, result = finetune(FinetuneConfig(task=task, epochs=1, class_weights=weights,
                                                 **options), log=lines.append)
        assert sum(l.startswith('class weights: ') for l in lines) == 1
        params.append(params_of(net))
    for name, value in params[0].items():
        onp.testing.assert_allclose(value, params[1][name], rtol=1e-4, atol=2e-5, err_msg=name)
