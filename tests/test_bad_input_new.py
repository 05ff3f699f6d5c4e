"""Issue 24's kinds on what came with quantize, distill and export: damaged exported-graph
folders (inference/graph.py's loader), each file missing, empty, of the wrong kind or of another
export, end in one error naming the file (exit code 2), through predict."""
import json
import os
import shutil

import pytest
from test_quantize import tiny_model
from tiny_data import refused

from gluon_bertft.export import export

quiet = lambda *a: None


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """``(fp32 graph folder, another fp32 graph folder of a wider model)``."""
    root = tmp_path_factory.mktemp('graphs')
    path, _ = tiny_model('classify', root)
    export(path, 'mxnet', str(root / 'graph'), log=quiet)
    return str(root / 'graph')


def damaged(graph, tmp_path, change):
    folder = tmp_path / 'g'
    shutil.copytree(graph, folder)
    change(folder)
    return str(folder)


def swap_dir(path):
    os.remove(path)
    os.mkdir(path)


def swap_fifo(path):
    os.remove(path)
    os.mkfifo(path)


def replace_array(folder):
    """model-0000.params with one array of another shape (files of two exports)."""
    import mxnet as mx
    where = str(folder / 'model-0000.params')
    with mx.util.np_array(False), mx.util.np_shape(False):
        saved = mx.nd.load(where)
        name = next(k for k in saved if k.endswith('weight'))
        saved[name] = mx.nd.zeros((3, 5))
        mx.nd.save(where, saved)


DAMAGE = [
    (lambda f: os.remove(f / 'model-symbol.json'), r'model-symbol\.json'),
    (lambda f: (f / 'model-symbol.json').write_text(''), r'model-symbol\.json'),
    (lambda f: (f / 'model-symbol.json').write_text('[]'), r'model-symbol\.json: not an MXNet'),
    (lambda f: (f / 'model-symbol.json').write_text(
        '{"nodes": [{"op": "bogus", "name": "x", "inputs": []}], "arg_nodes": [0], '
        '"heads": [[0, 0, 0]]}'), r'model-symbol\.json: not a graph MXNet can load'),
    (lambda f: (f / 'model-symbol.json').write_bytes(
        (f / 'model-symbol.json').read_text().encode('utf-16')), r'model-symbol\.json'),
    (lambda f: swap_fifo(f / 'model-symbol.json'), r'model-symbol\.json: a named pipe'),
    (lambda f: os.remove(f / 'model-0000.params'), r'without model-0000\.params'),
    (lambda f: (f / 'model-0000.params').write_bytes(b''), r'model-0000\.params: not a readable'),
    (lambda f: (f / 'model-0000.params').write_bytes(b'\0garbage' * 100),
     r'model-0000\.params: not a readable'),
    (lambda f: (f / 'model-0000.params').write_bytes(
        (f / 'model-0000.params').read_bytes()[:1000]), r'model-0000\.params: not a readable'),
    (lambda f: swap_dir(f / 'model-0000.params'), r'model-0000\.params: a folder'),
    (replace_array, r'model-0000\.params: its arrays do not fit model-symbol\.json'),
]


@pytest.mark.parametrize('change, match', DAMAGE)
def test_a_damaged_graph_folder_names_the_file(graphs, tmp_path, capsys, change, match):
    folder = damaged(graphs, tmp_path, change)
    line = refused(capsys, 'predict', '--model', folder, '--text', 'lovely film', match=match)
    assert 'Traceback' not in line and 'Stack trace' not in line


def test_an_undamaged_copy_still_predicts(graphs, tmp_path, capsys):
    from tiny_data import cli_run
    folder = damaged(graphs, tmp_path, lambda f: None)
    code, err = cli_run(capsys, 'predict', '--model', folder, '--text', 'lovely film')
    assert code == 0, err


def test_a_graph_config_with_another_number_of_labels_is_refused(graphs, tmp_path, capsys):
    def three_labels(folder):
        config = json.loads((folder / 'config.json').read_text())
        config['labels'] = ['a', 'b', 'c']
        (folder / 'config.json').write_text(json.dumps(config))
    folder = damaged(graphs, tmp_path, three_labels)
    refused(capsys, 'predict', '--model', folder, '--text', 'lovely film',
            match=r'config\.json: "labels" has 3 classes but the graph has 2 outputs')


# ---- the probe of quantize, distill, export and HF task folders (docs/bad-input.md) ----------

EXPORTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'hf_export')
HF_TASK = os.path.join(EXPORTS, 'classify.hf')
ROWS = ['a very good movie', 'the cat was bad', 'a fun movie', 'the dog is not good'] * 4


def rows_file(path, lines, encoding='utf-8', header='sentence\tlabel', label='pos'):
    path.write_text(header + '\n' + ''.join(f'{t}\t{label}\n' if label else f'{t}\n' for t in lines),
                    encoding=encoding)
    return str(path)


@pytest.mark.parametrize('argv', [
    ['export', '--model', HF_TASK, '--format', 'hf'],
    ['quantize', '--model', HF_TASK, '--calibration', HF_TASK],
    ['explain', '--model', HF_TASK, '--text', 'a good movie'],
])
def test_out_dash_is_not_a_folder(argv, capsys):
    """``-`` is standard output, for ``--output``; as ``--out`` it made a folder named ``-``."""
    refused(capsys, *argv, '--out', '-', match=r'--out -: standard output is for --output')


@pytest.mark.parametrize('make, match', [
    (lambda p: p.mkdir(), r'c: a folder, not a regular file'),
    (lambda p: os.mkfifo(p), r'c: a named pipe, not a regular file'),
    (lambda p: os.symlink('/dev/zero', p), r'c: a device, not a regular file'),
])
def test_a_calibration_path_that_is_not_a_file_is_named(make, match, tmp_path, capsys):
    make(tmp_path / 'c')
    refused(capsys, 'quantize', '--model', HF_TASK, '--calibration', tmp_path / 'c',
            '--out', tmp_path / 'o', match=match)


def test_quantize_takes_a_hugging_face_folder_encoding_and_agreement_one(tmp_path, capsys):
    """A Hugging Face task folder is a model like a package's (it was refused for its missing
    ``bert`` config); ``--encoding`` is an option of quantize (its reader suggested it);
    ``--min-agreement 1`` is a share like any other (it was refused as outside [0, 1))."""
    from tiny_data import cli_run
    calibration = rows_file(tmp_path / 'c.tsv', ROWS, encoding='utf-16')
    out = tmp_path / 'q'
    code, err = cli_run(capsys, 'quantize', '--model', HF_TASK, '--calibration', calibration,
                        '--out', out, '--calib-mode', 'naive', '--encoding', 'utf-16',
                        '--min-agreement', '1')
    assert code == 0, err
    assert (out / 'model.params').is_file()  # the fp32 weights, for explain
    config = json.loads((out / 'config.json').read_text())
    assert config['precision'] == 'int8' and config['reader']['encoding'] == 'utf-8'
    code, err = cli_run(capsys, 'predict', '--model', out, '--text', 'a very good movie')
    assert code == 0, err


def test_text_the_model_cannot_read_is_named_by_quantize(tmp_path, capsys):
    calibration = rows_file(tmp_path / 'c.tsv', ['这部电影非常好看'] * 16)
    refused(capsys, 'quantize', '--model', HF_TASK, '--calibration', calibration, '--out',
            tmp_path / 'q', '--max-unknown', '0.3', match=r'c\.tsv .*unknown tokens.*--max-unknown')
    assert not (tmp_path / 'q').exists()


def test_export_mxnet_of_a_hugging_face_folder_gives_its_outputs(tmp_path):
    from gluon_bertft.inference import predict
    export(HF_TASK, 'mxnet', str(tmp_path / 'g'), log=quiet)
    data = rows_file(tmp_path / 'd.tsv', ROWS)
    assert predict.evaluate_file(str(tmp_path / 'g'), data) == predict.evaluate_file(HF_TASK, data)


def hf_task_copy(tmp_path, **changes):
    folder = tmp_path / 'h'
    shutil.copytree(HF_TASK, folder)
    config = json.loads((folder / 'config.json').read_text())
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    (folder / 'config.json').write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize('id2label, match', [
    (['negative', 'positive'], r'"id2label" is .*expected an object'),
    ({'1': 'negative', '2': 'positive'}, r'"id2label" is .*expected an object'),
    ({'0': 'negative', '1': 'positive', '2': 'neutral'}, r'"id2label" .* does not agree'),
    ({'0': 'positive', '1': 'negative'}, r'"id2label" .* does not agree'),
    ({'0': 'bad', '1': 'good'}, r'"id2label" .* does not agree'),
])
def test_an_exported_folder_whose_id2label_is_not_its_tasks_is_refused(id2label, match, tmp_path):
    """With the package's own key, ``id2label`` (what transformers shows) must be the task's
    display labels in order: a folder edited on one side would predict other names here."""
    from gluon_bertft.common.errors import PretrainedError
    from gluon_bertft.inference import predict
    with pytest.raises(PretrainedError, match=r'config\.json: ' + match):
        predict.load_model(hf_task_copy(tmp_path, id2label=id2label))


def test_an_exported_folder_without_id2label_or_with_another_label2id_loads(tmp_path):
    """transformers reads ``id2label`` for its outputs, not ``label2id``; neither is needed."""
    from gluon_bertft.inference import predict
    _, _, task = predict.load_model(hf_task_copy(tmp_path, label2id={'x': 5}))
    assert task.display_labels == ['negative', 'positive']
    shutil.rmtree(tmp_path / 'h')
    _, _, task = predict.load_model(hf_task_copy(tmp_path, id2label=None, label2id=None))
    assert task.display_labels == ['negative', 'positive']


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    """``(an untrained classify model folder, its files)``: a teacher in no time."""
    return tiny_model('classify', tmp_path_factory.mktemp('teacher'))


def distill_args(teacher, tmp_path, *more):
    path, files = teacher
    return ['distill', '--teacher', path, '--train', files['train'], '--test', files['test'],
            '--student-blocks', '1', '--epochs', '1', '--batch-size', '16', '--devices', 'cpu',
            '--max-test-examples', '16', '--out', tmp_path / 'd', *more]


@pytest.mark.parametrize('value', ['1e-30', '1e30', '5000'])
def test_a_temperature_float32_cannot_compute_is_refused(value, teacher, tmp_path, capsys):
    """Below 1.1e-19 T^2 underflows (the soft loss was 0, silently); above 1000 the loss loses
    its digits (1e30 ended in "diverged, lower --lr")."""
    refused(capsys, *distill_args(teacher, tmp_path, '--temperature', value),
            match=r'--temperature: .*out of range \(1\.1e-19 to 1000')
    from gluon_bertft.common.errors import ConfigError
    from gluon_bertft.config import DistillConfig
    with pytest.raises(ConfigError, match='--temperature'):
        DistillConfig(teacher='t', train='x', student_blocks=1, temperature=float(value)).check_ranges()


@pytest.mark.parametrize('name, match', [
    ('train', r'--teacher-outputs .*: is --train'),
    ('notes.txt', r'--teacher-outputs .*notes\.txt: give a file ending in \.npz'),
])
def test_the_teacher_cache_is_an_output_never_an_input(name, match, teacher, tmp_path, capsys):
    """It overwrote the file given (a training file became an .npz)."""
    path = teacher[1]['train'] if name == 'train' else str(tmp_path / name)
    if name != 'train':
        open(path, 'w').write('notes')
    before = open(path, 'rb').read()
    refused(capsys, *distill_args(teacher, tmp_path, '--teacher-outputs', path), match=match)
    assert open(path, 'rb').read() == before


def damage_cache(kind, path):
    import numpy as onp
    if kind == 'truncated':
        with open(path, 'r+b') as f:
            f.truncate(100)
        return
    with onp.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    out = arrays['output0']
    arrays['output0'] = dict(nan=lambda: onp.where(out == out.max(), onp.nan, out),
                             rows=lambda: out[:-3], width=lambda: out[:, :1],
                             values=lambda: out[:, ::-1].copy(),
                             dtype=lambda: out.astype('float64'))[kind]()
    onp.savez(path, **arrays)


@pytest.mark.parametrize('kind', ['truncated', 'nan', 'rows', 'width', 'values', 'dtype'])
def test_a_damaged_teacher_cache_is_computed_again(kind, teacher, tmp_path):
    """Under its key, a cache with arrays of other rows, widths, types or values, or NaN, was
    used (a traceback, "diverged, lower --lr", or a student taught other scores); a truncated
    one was a traceback. Each is now computed again, and the same as a fresh one."""
    import mxnet as mx
    import numpy as onp
    from gluon_bertft.inference import predict
    from gluon_bertft.inference.fast import inference_net
    from gluon_bertft.data.batching import make_iter
    from gluon_bertft.training import distill as kd
    from gluon_bertft.training.evaluate import predict_outputs
    net, vocab, task = predict.load_model(teacher[0], [mx.cpu()])
    dataset = task.encode(task.read(teacher[1]['train']), vocab, log=quiet)
    cache, lines = str(tmp_path / 'c.npz'), []
    compute = lambda data: kd.stack_outputs(
        predict_outputs(inference_net(net), make_iter(data, 16, False, sort=True), [mx.cpu()]),
        data.all_token_ids.shape[1], task.per_token)
    run = lambda: kd.teacher_outputs(net, dataset, compute, 't', cache, lines.append)
    fresh = run()
    assert run()[0].tolist() == fresh[0].tolist() and 'read from' in lines[-1]
    damage_cache(kind, cache)
    again = run()
    assert 'computed again' in ' '.join(lines[-2:]) or 'computed for' in lines[-1]
    assert onp.array_equal(again[0], fresh[0])
    assert 'read from' in (run(), lines[-1])[1]  # the cache was replaced by a good one


def test_distill_checks_the_unlabelled_text_encoding_and_variables(teacher, tmp_path, capsys,
                                                                    monkeypatch):
    """``--unlabelled`` text the teacher cannot read is measured as --train's is; ``--encoding``
    is an option of distill (its readers suggested it); the training switch's variable is
    checked (distill ignored it)."""
    more = rows_file(tmp_path / 'u.tsv', ['这部电影非常好看'] * 8, header='sentence', label=None)
    refused(capsys, *distill_args(teacher, tmp_path, '--unlabelled', more, '--max-unknown', '0.3'),
            match=r'u\.tsv .*unknown tokens')
    utf16 = rows_file(tmp_path / 'u16.tsv', ['the film was great'] * 8, encoding='utf-16',
                      header='sentence', label=None)
    refused(capsys, *distill_args(teacher, tmp_path, '--unlabelled', utf16),
            match=r'u16\.tsv:1: .*give --encoding utf-16')
    from tiny_data import cli_run
    files = {}
    for name in ('train', 'test'):
        files[name] = str(tmp_path / f'{name}16.tsv')
        with open(teacher[1][name], encoding='utf-8') as f, open(files[name], 'w', encoding='utf-16') as g:
            g.write(f.read())
    args = distill_args((teacher[0], files), tmp_path, '--unlabelled', utf16, '--encoding', 'utf-16')
    code, err = cli_run(capsys, *args)
    assert code == 0, err
    monkeypatch.setenv('GLUON_BERTFT_TRAIN_FUSED_ATTENTION', 'abc')
    refused(capsys, *distill_args(teacher, tmp_path), match=r'GLUON_BERTFT_TRAIN_FUSED_ATTENTION')
