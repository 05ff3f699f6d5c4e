"""Distillation (``python -m gluon_bertft distill``, docs/distillation.md): the soft loss, the
students, the teacher's cached outputs, every task on tiny models, exact resume, two devices,
the saved folder, and bad input.

The teachers are tiny (``tiny_data.TINY_RUN``: bert.tiny, 2 blocks, random weights, one
epoch), so every student is one of their blocks (or a ``--preset``)."""
import json
import os
import shutil

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np
from test_resume import CrashAfter
from tiny_data import (TINY_RUN, cli_run, conll_file, once_per_task, refused, squad_json,
                       task_files)

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common.errors import ConfigError, PretrainedError
from gluon_bertft.config import DistillConfig
from gluon_bertft.data.batching import BatchIter, PerExample
from gluon_bertft.distill import block_choice, distill
from gluon_bertft.inference import predict
from gluon_bertft.training import distill as kd

TASKS = ('classify', 'snli', 'regress', 'tag', 'qa')


def quiet(*args):
    pass


def regress_tsv(path, n=48, seed=0):
    """``sentence1<TAB>sentence2<TAB>score`` rows: the score counts the good words."""
    rng = onp.random.RandomState(seed)
    lines = ['sentence1\tsentence2\tscore']
    for _ in range(n):
        good = int(rng.randint(0, 4))
        words = ['great'] * good + ['film'] * (4 - good)
        lines.append(f'{" ".join(words)}\tthe story\t{good * 1.25:.2f}')
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def files_of(task, folder):
    """Tiny train/test files of ``task`` and an unlabelled file in its training format."""
    if task == 'regress':
        return dict(train=regress_tsv(folder / 'train.tsv'), test=regress_tsv(folder / 'test.tsv', 16, 1)), \
            regress_tsv(folder / 'more.tsv', 16, 2)
    files = task_files(task, folder)
    more = dict(classify=lambda: files['test'], snli=lambda: files['test'],
                tag=lambda: conll_file(folder / 'more.conll', 16, seed=2, tagged=False),
                qa=lambda: squad_json(folder / 'more.json', 16, seed=2, answers=False))[task]()
    return files, more


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    """A tiny fine-tuned teacher of each task: ``(model folder, files, unlabelled file)``."""
    def make(task, folder):
        files, more = files_of(task, folder)
        options = {k: v for k, v in files.items() if k not in ('train', 'test')}
        finetune(FinetuneConfig(task=task, epochs=1, out=str(folder / 'teacher'),
                                **dict(TINY_RUN, **files)), log=quiet)
        return str(folder / 'teacher' / 'model'), files, more, options
    return once_per_task(tmp_path_factory, make)


def student_config(teacher_path, files, out, **options):
    settings = dict(teacher=teacher_path, train=files['train'], test=files['test'],
                    student_blocks=1, epochs=1, batch_size=16, devices='cpu', out=str(out),
                    max_test_examples=16)
    return DistillConfig(**dict(settings, **options))


def params_of(net):
    return {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}


# --- the loss ---

def test_kl_div_is_t_squared_times_kl_at_t():
    rng = onp.random.RandomState(0)
    s, t = rng.normal(size=(4, 5)).astype('float32'), rng.normal(size=(4, 5)).astype('float32')
    T = 2.0
    soft = lambda x: onp.exp(x / T) / onp.exp(x / T).sum(-1, keepdims=True)
    s64, t64 = s.astype('float64'), t.astype('float64')
    expected = (soft(t64) * (onp.log(soft(t64)) - onp.log(soft(s64)))).sum(-1) * T * T
    got = kd.kl_div(np.array(s), np.array(t), T).asnumpy()
    onp.testing.assert_allclose(got, expected, rtol=1e-4)
    assert onp.allclose(kd.kl_div(np.array(t), np.array(t), T).asnumpy(), 0, atol=1e-6)
    # masked positions (QA's -1e6) weigh nothing, and stay finite
    s[:, 0] = t[:, 0] = kd.PAD_SCORE
    masked = kd.kl_div(np.array(s), np.array(t), T).asnumpy()
    keep = lambda x: onp.exp(x[:, 1:] / T) / onp.exp(x[:, 1:] / T).sum(-1, keepdims=True)
    onp.testing.assert_allclose(masked, (keep(t) * (onp.log(keep(t)) - onp.log(keep(s)))).sum(-1)
                                * T * T, rtol=1e-4)


def test_distill_loss_mixes_soft_and_hard_and_unlabelled_rows_have_no_hard_loss():
    hard = lambda y_hat, y: np.ones(y.shape) * 3.0
    soft = lambda y_hat, y, teacher, T: np.ones(y.shape) * 5.0
    y, flags = np.zeros(2), np.array([1.0, 0.0])
    assert kd.DistillLoss(hard, soft, 0.25, 2.0)(None, y, flags, None).tolist() == [0.25 * 5 + 0.75 * 3, 0.25 * 5]
    assert kd.DistillLoss(hard, soft, 0.0, 2.0)(None, y, flags, None).tolist() == [3.0, 0.0]
    assert kd.DistillLoss(hard, soft, 1.0, 2.0)(None, y, flags, None).tolist() == [5.0, 5.0]


def test_per_example_teacher_scores_are_not_trimmed_with_the_tokens():
    tokens = onp.ones((3, 32), dtype='int32')
    scores = onp.arange(3 * 7, dtype='float32').reshape(3, 7)  # 7 classes, batches 4 wide
    it = BatchIter((tokens, tokens * 0, onp.full(3, 3.0, 'float32'),
                    (onp.zeros((3, 32), 'float32'), PerExample(scores))), 3)
    (X, _, _), (per_token, per_example) = next(iter(it))
    assert X.shape == (3, 4) and per_token.shape == (3, 4)
    assert per_example.asnumpy().tolist() == scores.tolist()


def test_block_choice():
    assert block_choice(6, 3, 'alternate') == [0, 2, 4]
    assert block_choice(6, 2, 'alternate') == [0, 3]
    assert block_choice(6, 1, 'alternate') == [0]
    assert block_choice(12, 6, 'alternate') == [0, 2, 4, 6, 8, 10]
    assert block_choice(6, 4, 'alternate') == [0, 1, 3, 4]
    assert block_choice(6, 2, 'first') == [0, 1]


def test_stack_outputs_pads_per_token_outputs():
    outputs = [(onp.ones(4), onp.zeros(4)), (onp.ones(8), onp.ones(8))]
    start, end = kd.stack_outputs(outputs, 12, per_token=True)
    assert start.shape == end.shape == (2, 12)
    assert (start[0, 4:] == kd.PAD_SCORE).all() and (start[1, :8] == 1).all()
    (classes,) = kd.stack_outputs([onp.ones(3), onp.zeros(3)], 12, per_token=False)
    assert classes.shape == (2, 3)


# --- every task ---

@pytest.mark.slow
@pytest.mark.parametrize('task', TASKS)
def test_distill_every_task(task, teacher, tmp_path):
    """A one-block student of a two-block teacher, labelled plus unlabelled rows: it trains,
    its folder is an ordinary model folder, and the teacher's outputs are cached beside it."""
    path, files, more, options = teacher(task)
    lines = []
    net, vocab, result = distill(student_config(path, files, tmp_path / 'out', unlabelled=more),
                                 log=lines.append)
    assert len(net.encoder.blks) == 1
    assert result['test'] and result['teacher'] and len(result['train_loss']) == 1
    assert onp.isfinite(result['train_loss'][0])
    assert any(line.startswith('unlabelled: ') for line in lines)
    folder = tmp_path / 'out'
    assert sorted(os.listdir(folder)) == ['model', 'result.json', 'teacher_outputs.npz',
                                          'training_curve.png']
    saved = json.loads((folder / 'model' / 'config.json').read_text())
    assert saved['task'] == task and saved['bert']['num_blks'] == 1
    # evaluate reads it back, with the test metrics the run reported
    metric = predict.evaluate_file(str(folder / 'model'), files['test'], devices=[mx.cpu()])
    first = next(iter(result['test']))
    assert metric[first] == pytest.approx(result['test'][first], abs=1e-6)


@pytest.mark.slow
def test_student_starts_from_the_teachers_blocks(teacher, tmp_path):
    """``first``: the student's block 0, embeddings, pooler and task layer are the teacher's
    (checked before any update: lr so small that nothing moves at float32's precision)."""
    path, files, _, _ = teacher('classify')
    net, _, _ = distill(student_config(path, files, tmp_path / 'out', student_init='first',
                                       lr=1e-30, dropout=0.0), log=quiet)
    teacher_net, _, _ = predict.load_model(path, [mx.cpu()])
    got, want = params_of(net), params_of(teacher_net)
    assert set(got) == {n for n in want if not n.startswith('encoder.blks.1.')}
    for name, value in got.items():
        onp.testing.assert_allclose(value, want[name], atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_teacher_outputs_are_cached_and_shared(teacher, tmp_path):
    path, files, more, _ = teacher('tag')
    cache = str(tmp_path / 'shared.npz')
    lines = []
    distill(student_config(path, files, tmp_path / 'a', teacher_outputs=cache, unlabelled=more),
            log=lines.append)
    assert any('computed for' in line and cache in line for line in lines)
    lines.clear()
    distill(student_config(path, files, tmp_path / 'b', teacher_outputs=cache, unlabelled=more,
                           student_init='first'), log=lines.append)
    assert any(line == f"teacher's outputs: read from {cache}" for line in lines)
    lines.clear()  # other inputs (no unlabelled rows): computed again
    distill(student_config(path, files, tmp_path / 'c', teacher_outputs=cache), log=lines.append)
    assert any('computed for' in line for line in lines)


@pytest.mark.slow
def test_two_devices_equal_one(teacher, tmp_path):
    path, files, more, _ = teacher('classify')
    runs = [params_of(distill(student_config(path, files, tmp_path / d.replace(':', '').replace(',', ''),
                                             unlabelled=more, dropout=0.0, devices=d,
                                             epochs=2), log=quiet)[0])
            for d in ('cpu', 'cpu:0,cpu:1')]
    for name, value in runs[0].items():
        onp.testing.assert_allclose(runs[1][name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize('task', ('classify', 'qa'))
def test_resume_is_bit_identical(task, teacher, tmp_path, monkeypatch):
    """Interrupted inside the second epoch and resumed (the teacher's outputs read back from
    the cache), the student ends with the parameters of an unbroken run."""
    path, files, more, _ = teacher(task)
    make = lambda out, **o: student_config(path, files, tmp_path / out, unlabelled=more,
                                           epochs=2, checkpoint_every=2, **o)
    expected = params_of(distill(make('unbroken'), log=quiet)[0])
    crash = CrashAfter(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        distill(make('broken'), log=quiet)
    monkeypatch.undo()
    lines = []
    net, _, _ = distill(make('broken', resume=True), log=lines.append)
    assert crash.saved[-1][0] == 1 and any(line.startswith('resumed from') for line in lines)
    assert any("read from" in line for line in lines)
    got = params_of(net)
    for name, value in expected.items():
        assert onp.array_equal(got[name], value), name


def test_preset_student_with_the_teachers_vocabulary(teacher, tmp_path):
    path, files, _, _ = teacher('classify')
    net, vocab, result = distill(student_config(path, files, tmp_path / 'out', student_blocks=None,
                                                preset='bert.tiny', alpha=1.0), log=quiet)
    _, teacher_vocab, _ = predict.load_model(path, [mx.cpu()])
    assert vocab.idx_to_token == teacher_vocab.idx_to_token
    assert onp.isfinite(result['train_loss'][0])


@pytest.mark.slow
def test_predict_and_explain_take_the_student(teacher, tmp_path, capsys):
    path, files, _, _ = teacher('classify')
    distill(student_config(path, files, tmp_path / 'out'), log=quiet)
    model = str(tmp_path / 'out' / 'model')
    code, err = cli_run(capsys, 'predict', '--model', model, '--text', 'a great film', '--devices', 'cpu')
    assert code == 0, err
    code, err = cli_run(capsys, 'explain', '--model', model, '--text', 'a great film', '--method',
                        'gradxinput', '--out', tmp_path / 'why', '--devices', 'cpu')
    assert code == 0, err


# --- bad input ---

def test_cli_distills(teacher, tmp_path, capsys):
    path, files, more, _ = teacher('classify')
    code, err = cli_run(capsys, 'distill', '--teacher', path, '--train', files['train'],
                        '--test', files['test'], '--student-blocks', '1', '--epochs', '1',
                        '--batch-size', '16', '--devices', 'cpu', '--unlabelled', more,
                        '--out', tmp_path / 'out')
    assert code == 0, err
    assert (tmp_path / 'out' / 'model' / 'model.params').is_file()


@pytest.mark.parametrize('args, match', [
    (['--student-blocks', '0'], r'--student-blocks 0: give 1 to 1 \(the teacher has 2 blocks\)'),
    (['--student-blocks', '2'], r'--student-blocks 2: give 1 to 1'),
    (['--student-blocks', '1', '--alpha', '1.5'], r'--alpha: .*must be in \[0, 1\]'),
    (['--student-blocks', '1', '--temperature', '0'], r'--temperature: .*finite number > 0'),
    (['--student-blocks', '1', '--task', 'tag'], r'--task tag: the teacher .* is a classify model'),
    ([], r'give the student: --student-blocks K'),
    (['--student-blocks', '1', '--preset', 'bert.tiny'], r'--student-blocks 1: not with --pretrained or --preset'),
    (['--preset', 'bert.tiny', '--student-init', 'first'], r'--student-init: applies with --student-blocks'),
    (['--student-blocks', '1', '--max-len', '16'], r'unrecognized arguments: --max-len'),
    (['--student-blocks', '1', '--alpha', '0', '--unlabelled', 'x.tsv'], r'--unlabelled: with --alpha 0'),
])
def test_bad_options_are_refused(args, match, teacher, tmp_path, capsys):
    path, files, _, _ = teacher('classify')
    refused(capsys, 'distill', '--teacher', path, '--train', files['train'], '--test', files['test'],
            '--devices', 'cpu', '--out', tmp_path / 'out', *args, match=match)


def test_bad_teachers_and_files_are_refused(teacher, tmp_path, capsys):
    path, files, _, _ = teacher('classify')
    base = ['distill', '--train', files['train'], '--test', files['test'], '--devices', 'cpu',
            '--student-blocks', '1', '--out', tmp_path / 'out']
    graph = tmp_path / 'graph'
    shutil.copytree(path, graph)
    (graph / 'model-symbol.json').write_text('{}')
    refused(capsys, *base, '--teacher', graph, match=r'--teacher .*graph: an exported graph')
    int8 = tmp_path / 'int8'
    shutil.copytree(path, int8)
    saved = json.loads((int8 / 'config.json').read_text())
    (int8 / 'config.json').write_text(json.dumps(dict(saved, format='int8')))
    refused(capsys, *base, '--teacher', int8, match=r'--teacher .*int8: an INT8 model')
    refused(capsys, *base, '--teacher', tmp_path / 'none', match=r'none: no such model folder')
    bad = tmp_path / 'bad.json'
    bad.write_text('{"a": 1}')
    refused(capsys, *base, '--teacher', path, '--unlabelled', bad, match=r'bad.json')


@pytest.mark.parametrize('task, content, match', [
    ('classify', 'text\nno sentence column\n', r'more.txt.*sentence'),
    ('qa', 'Paris NN I-NP B-LOC\n', r'more.txt'),
])
def test_an_unlabelled_file_of_another_format_is_refused(task, content, match, teacher, tmp_path,
                                                         capsys):
    path, files, _, _ = teacher(task)
    more = tmp_path / 'more.txt'
    more.write_text(content)
    refused(capsys, 'distill', '--teacher', path, '--train', files['train'], '--test',
            files['test'], '--devices', 'cpu', '--student-blocks', '1', '--out', tmp_path / 'out',
            '--unlabelled', more, match=match)


@pytest.mark.slow
def test_a_student_with_another_tokenizer_is_refused(teacher, tmp_path):
    path, files, _, _ = teacher('classify')
    with pytest.raises(ConfigError, match=r"--pretrained minilm: its tokenizer is not the teacher's"):
        distill(student_config(path, files, tmp_path / 'out', student_blocks=None,
                               pretrained='minilm'), log=quiet)


def test_api_checks(teacher, tmp_path):
    path, files, _, _ = teacher('classify')
    with pytest.raises(ConfigError, match='--teacher: give'):
        distill(student_config(None, files, tmp_path / 'o'), log=quiet)
    with pytest.raises(ConfigError, match='--kvstore dist_sync: distill runs in one process'):
        distill(student_config(path, files, tmp_path / 'o', kvstore='dist_sync'), log=quiet)
    with pytest.raises(PretrainedError):
        distill(student_config(str(tmp_path), files, tmp_path / 'o'), log=quiet)


def test_a_hugging_face_task_folder_teaches(tmp_path):
    """A ``BertForSequenceClassification`` saved by transformers (tests/fixtures/hf_made: two
    layers, labels sad/neutral/glad) is a teacher like a package's folder."""
    made = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'hf_made')
    rows = ['sentence\tlabel'] + [f'{w} day\t{lab}' for w, lab in
                                  (('a sad', 'sad'), ('a fine', 'neutral'), ('a happy', 'glad'))] * 6
    (tmp_path / 'train.tsv').write_text('\n'.join(rows) + '\n')
    files = dict(train=str(tmp_path / 'train.tsv'), test=str(tmp_path / 'train.tsv'))
    net, _, result = distill(student_config(made, files, tmp_path / 'out'), log=quiet)
    assert len(net.encoder.blks) == 1 and result['teacher']['accuracy'] >= 0
    saved = json.loads((tmp_path / 'out' / 'model' / 'config.json').read_text())
    assert saved['task'] == 'classify' and saved['labels'] == ['sad', 'neutral', 'glad']
