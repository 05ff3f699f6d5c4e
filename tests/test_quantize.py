"""Exported-graph folders (inference/graph.py) and calibrated INT8 quantization
(inference/quantize.py, fidelity.py): every task, the folder layout, the graph loaded without
the package, predict/evaluate/explain on graph folders, and the bad input of the issue."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from tiny_data import once_per_task, refused, task_files, untrained_model

from gluon_bertft.common import storage
from gluon_bertft.common.errors import ConfigError, DataError
from gluon_bertft.export import export
from gluon_bertft.inference import graph, predict, quantize
from gluon_bertft.inference.fidelity import fidelity

TASKS = ('classify', 'snli', 'regress', 'tag', 'qa')


def regress_files(folder):
    rows = [f'{"great " * (i % 4)}film {i}\t{i % 4}' for i in range(48)]
    (folder / 'train.tsv').write_text('sentence\tscore\n' + '\n'.join(rows) + '\n')
    return dict(train=str(folder / 'train.tsv'), test=str(folder / 'train.tsv'),
                text_columns=('sentence',))


def tiny_model(task_name, folder):
    """``(model folder, files)``: a saved bert.tiny model of ``task_name`` as finetune writes
    it, its weights as initialized (seeded), and its data files."""
    files = regress_files(folder) if task_name == 'regress' else task_files(task_name, folder)
    return untrained_model(task_name, folder, files, mx.init.Normal(0.5), seed=0), files


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    return once_per_task(tmp_path_factory, tiny_model)


@pytest.fixture(scope='module')
def quantized(models, tmp_path_factory):
    def make(task, folder):
        path, files = models(task)
        out = str(folder / 'q')
        kept, quantize.MIN_AGREEMENT = quantize.MIN_AGREEMENT, 0.0  # every layer in INT8
        try:
            report = quantize.quantize(path, files['train'], out, 'naive', 64, log=lambda *a: None)
        finally:
            quantize.MIN_AGREEMENT = kept
        return out, report
    return once_per_task(tmp_path_factory, make)


def outputs_on(net, task, vocab, data):
    """The package's outputs of ``net`` for every input of ``data``, as one list of arrays."""
    from gluon_bertft.data.batching import make_iter
    from gluon_bertft.training.evaluate import predict_outputs
    rows = predict.read_with(task, data)
    dataset = task.encode(rows, vocab, log=lambda *a: None)
    return predict_outputs(net, make_iter(dataset, 16, False, sort=True), [mx.cpu()]), dataset


@pytest.mark.parametrize('task', TASKS)
def test_quantize_every_task_writes_an_int8_folder_that_predict_and_evaluate_run(
        task, models, quantized):
    path, files = models(task)
    out, report = quantized(task)
    assert sorted(os.listdir(out)) == sorted(n for n in graph.files('int8')
                                             if os.path.exists(os.path.join(path, n))
                                             or n not in graph.VOCAB_FILES)
    config = storage.read_json(os.path.join(out, 'config.json'))
    assert config['format'] == 'mxnet-graph' and config['precision'] == 'int8'
    assert config['task'] == storage.read_json(os.path.join(path, 'config.json'))['task']
    assert config['fp32_layers'] == report['fp32_layers'] == []
    assert config['quantization']['agreement'] == report['agreement']
    assert config['quantization']['calib_rows'] == min(64, 48)
    ops = {n['op'] for n in json.load(open(os.path.join(out, graph.SYMBOL)))['nodes']}
    assert '_contrib_quantize_v2' in ops or '_contrib_quantized_embedding' in ops
    net, vocab, task_ = predict.load_model(out, [mx.cpu()])
    assert isinstance(net, graph.GraphNet) and net.precision == 'int8'
    fp32_net, _, _ = predict.load_model(path, [mx.cpu()])
    got, dataset = outputs_on(net, task_, vocab, files['test'])
    want, _ = outputs_on(fp32_net, task_, vocab, files['test'])
    assert len(got) == len(want) == len(dataset)
    metrics = predict.evaluate_file(out, files['test'])
    assert metrics == task_.score(got, predict.read_with(task_, files['test']), dataset)


def test_the_saved_int8_folder_keeps_the_agreement_it_reports(models, tmp_path):
    path, files = models('classify')
    out = str(tmp_path / 'q')
    report = quantize.quantize(path, files['train'], out, 'naive', 64, log=lambda *a: None)
    assert report['agreement'] >= quantize.MIN_AGREEMENT
    q, vocab, task = predict.load_model(out, [mx.cpu()])
    f, _, _ = predict.load_model(path, [mx.cpu()])
    got = onp.stack(outputs_on(q, task, vocab, files['train'])[0])
    want = onp.stack(outputs_on(f, task, vocab, files['train'])[0])
    assert not onp.array_equal(got, want)  # quantized: not the fp32 numbers
    assert (got.argmax(1) == want.argmax(1)).mean() >= quantize.MIN_AGREEMENT


@pytest.mark.slow
@pytest.mark.parametrize('task', ['classify', 'qa', 'tag'])
def test_export_mxnet_runs_without_the_package_with_the_same_outputs(task, models, tmp_path):
    path, files = models(task)
    out = str(tmp_path / 'exported')
    export(path, 'mxnet', out, log=lambda *a: None)
    assert sorted(os.listdir(out)) == sorted(n for n in graph.files('fp32')
                                             if os.path.exists(os.path.join(out, n)))
    assert storage.PARAMS not in os.listdir(out)
    net, vocab, _ = predict.load_model(path, [mx.cpu()])
    rng = onp.random.RandomState(0)
    tokens = rng.randint(0, len(vocab), (3, 12)).astype('int32')
    segments = (onp.arange(12)[None] >= 4).astype('int32') * onp.ones((3, 1), 'int32')
    lens = onp.array([12, 5, 9], 'float32')
    want = net((mx.np.array(tokens, dtype='int32'), mx.np.array(segments, dtype='int32'),
                mx.np.array(lens)))
    want = [w.asnumpy() for w in (want if isinstance(want, (tuple, list)) else [want])]
    onp.savez(tmp_path / 'inputs.npz', tokens=tokens, segments=segments, lens=lens)
    script = (
        'import sys, mxnet as mx, numpy as onp\n'
        'folder, tmp = sys.argv[1], sys.argv[2]\n'
        'd = onp.load(tmp + "/inputs.npz")\n'
        'net = mx.gluon.SymbolBlock.imports(folder + "/model-symbol.json", '
        '["data0", "data1", "data2"], folder + "/model-0000.params")\n'
        'out = net(mx.nd.array(d["tokens"], dtype="int32"), mx.nd.array(d["segments"], '
        'dtype="int32"), mx.nd.array(d["lens"]))\n'
        'out = out if isinstance(out, (list, tuple)) else [out]\n'
        'onp.savez(tmp + "/out.npz", *[o.asnumpy() for o in out])\n'
        'assert not any(m.startswith("gluon_bertft") for m in sys.modules)\n')
    subprocess.run([sys.executable, '-c', script, out, str(tmp_path)], check=True, cwd=tmp_path,
                   capture_output=True)
    got = onp.load(tmp_path / 'out.npz')
    for i, w in enumerate(want):
        onp.testing.assert_allclose(got[f'arr_{i}'], w, rtol=1e-5, atol=1e-5)


def test_evaluate_and_predict_on_an_exported_folder_equal_the_model_folder(models, tmp_path,
                                                                           capsys):
    from gluon_bertft import cli
    path, files = models('classify')
    out = str(tmp_path / 'exported')
    assert cli.main(['export', '--model', path, '--format', 'mxnet', '--out', out]) == 0
    assert predict.evaluate_file(out, files['test']) == predict.evaluate_file(path, files['test'])
    for model in (path, out):
        assert cli.main(['predict', '--model', model, '--text', 'a great film']) == 0
    first, second = capsys.readouterr().out.strip().splitlines()[-2:]
    assert first == second


@pytest.mark.slow
def test_explain_uses_the_fp32_weights_of_an_int8_folder_and_refuses_an_exported_graph(
        models, quantized, tmp_path, capsys):
    from gluon_bertft import cli
    path, _ = models('classify')
    out, _ = quantized('classify')
    assert cli.main(['explain', '--model', out, '--text', 'a great film', '--steps', '4',
                     '--out', str(tmp_path / 'e1')]) == 0
    assert 'explaining its fp32 weights' in capsys.readouterr().out
    assert cli.main(['explain', '--model', path, '--text', 'a great film', '--steps', '4',
                     '--out', str(tmp_path / 'e2')]) == 0
    one, two = (json.load(open(tmp_path / e / 'explanation.json')) for e in ('e1', 'e2'))
    assert one == two  # the same weights: the same attributions
    exported = str(tmp_path / 'exported')
    export(path, 'mxnet', exported, log=lambda *a: None)
    refused(capsys, 'explain', '--model', exported, '--text', 'a film', '--out',
            str(tmp_path / 'e3'), match=r'no gradients|gradients through the encoder')


def test_the_quantize_command(models, tmp_path, capsys):
    from gluon_bertft import cli
    path, files = models('classify')
    out = str(tmp_path / 'q')
    assert cli.main(['quantize', '--model', path, '--calibration', files['train'], '--out', out,
                     '--calib-mode', 'customize', '--calib-rows', '32']) == 0
    config = storage.read_json(os.path.join(out, 'config.json'))
    assert config['quantization']['calib_mode'] == 'customize'
    assert config['quantization']['calib_rows'] == 32
    assert 'wrote' in capsys.readouterr().out


def bad_calibration(tmp_path, text):
    (tmp_path / 'calib.tsv').write_text(text)
    return str(tmp_path / 'calib.tsv')


@pytest.mark.parametrize('make, match', [
    (lambda p: bad_calibration(p, ''), r'calib\.tsv'),
    (lambda p: bad_calibration(p, 'sentence\tlabel\na film\tpos\n'), r'1 row\(s\); calibration needs at least 8'),
    (lambda p: bad_calibration(p, '{"a": 1}\n' * 20), r'calib\.tsv'),
    (lambda p: str(p / 'absent.tsv'), r'absent\.tsv: no such file'),
])
def test_a_bad_calibration_file_is_refused(models, tmp_path, capsys, make, match):
    path, _ = models('classify')
    refused(capsys, 'quantize', '--model', path, '--calibration', make(tmp_path),
            '--out', str(tmp_path / 'q'), match=match)
    assert not os.path.exists(tmp_path / 'q')


def test_quantize_refuses_a_graph_its_own_model_as_out_gpus_and_unknown_modes(
        models, quantized, tmp_path, capsys):
    path, files = models('classify')
    out, _ = quantized('classify')
    args = ['--calibration', files['train']]
    refused(capsys, 'quantize', '--model', out, *args, '--out', str(tmp_path / 'q'),
            match=r'--model .*an exported graph \(int8\), not a model folder')
    refused(capsys, 'quantize', '--model', path, *args, '--out', path,
            match=r'--out .* is --model')
    with pytest.raises(ConfigError, match='INT8 quantization is a CPU path'):
        quantize.quantize(path, files['train'], str(tmp_path / 'q'), devices=[mx.gpu(0)])
    refused(capsys, 'quantize', '--model', path, *args, '--out', str(tmp_path / 'q'),
            '--calib-mode', 'best', match=r"--calib-mode 'best': choose from naive")
    with pytest.raises(ConfigError, match='INT8 graph, which runs on CPUs only'):
        predict.load_model(out, [mx.gpu(0)])


@pytest.mark.parametrize('flags, warned', [(set(), True), ({'avx2', 'avx512_vnni'}, False)])
def test_a_cpu_without_vnni_is_warned_about(models, tmp_path, monkeypatch, flags, warned):
    path, files = models('classify')
    monkeypatch.setattr(quantize, 'cpu_flags', lambda: flags)
    lines = []
    quantize.quantize(path, files['train'], str(tmp_path / 'q'), 'naive', 16, log=lines.append)
    assert any('no AVX512-VNNI' in line for line in lines) == warned


def test_fidelity_measures():
    rng = onp.random.RandomState(0)
    ref = [[rng.randn(4, 3)], [rng.randn(2, 3)]]
    same = fidelity(ref, ref, [None, None])
    assert same['agreement'] == 1.0 and abs(same['divergence']) < 1e-12 and same['count'] == 6
    flipped = [[-b[0]] for b in ref]
    assert fidelity(ref, flipped, [None, None])['agreement'] < 0.5
    tags = rng.randn(2, 5, 4)
    noisy = tags.copy()
    noisy[0, 3:] = -tags[0, 3:]  # only past the first row's valid length
    report = fidelity([[tags]], [[noisy]], [onp.array([3, 5])])
    assert report['agreement'] == 1.0 and report['count'] == 8
    scores = onp.arange(10.0)
    assert fidelity([[scores]], [[scores + 0.1]], [None])['agreement'] == 1.0
    assert fidelity([[scores]], [[scores + 1.0]], [None])['agreement'] == 0.0


@pytest.mark.slow
def test_no_layer_kept_in_fp32_when_full_int8_is_faithful_and_layers_kept_otherwise(
        models, tmp_path, monkeypatch):
    path, files = models('classify')
    monkeypatch.setattr(quantize, 'MIN_AGREEMENT', 0.0)
    assert quantize.quantize(path, files['train'], str(tmp_path / 'a'), 'naive', 32,
                             log=lambda *a: None)['fp32_layers'] == []
    measured = []

    def strict(reference, outputs, valid_lens):  # agreement only when the divergence is ~0
        report = fidelity(reference, outputs, valid_lens)
        measured.append(report['divergence'])
        return dict(report, agreement=float(report['divergence'] < 1e-9))
    monkeypatch.setattr(quantize, 'fidelity', strict)
    monkeypatch.setattr(quantize, 'MIN_AGREEMENT', 0.99)
    report = quantize.quantize(path, files['train'], str(tmp_path / 'b'), 'naive', 32,
                               log=lambda *a: None)
    assert report['fp32_layers'] and measured[0] > 1e-9
    assert all(name.startswith(('encoder.', 'hidden', 'output')) for name in report['fp32_layers'])
    assert len(set(report['fp32_layers'])) == len(report['fp32_layers'])
    assert storage.read_json(str(tmp_path / 'b' / 'config.json'))['fp32_layers'] \
        == report['fp32_layers']


def test_a_data_error_names_the_calibration_file(models, tmp_path):
    path, _ = models('tag')
    calib = bad_calibration(tmp_path, 'sentence\tlabel\n' + 'a b\tx\n' * 20)
    with pytest.raises(DataError, match='calib.tsv'):
        quantize.quantize(path, calib, str(tmp_path / 'q'), log=lambda *a: None)
