"""``export --format hf`` and Hugging Face task folders loaded back (docs/export.md).

The oracle is transformers itself, run once in a separate environment
(tests/fixtures/make_hf_export_fixture.py): the token ids of its ``AutoTokenizer`` and the
logits of its ``AutoModelFor...`` on the folders the package exported from the tiny models of
tests/fixtures/hf_export/ (made by make_models.py there), and a folder transformers made itself
(tests/fixtures/hf_made/). No torch or transformers is imported here.
"""
import filecmp
import json
import logging
import os
import shutil

import numpy as onp
import pytest
from mxnet import np
from safetensors.numpy import load_file
from tiny_data import cli_run, refused, untrained_model

from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.export import HF_FILES, export
from gluon_bertft.inference import predict
from gluon_bertft.models import hf_tasks

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORTS = os.path.join(HERE, 'fixtures', 'hf_export')
MADE = os.path.join(HERE, 'fixtures', 'hf_made')
TASKS = ('classify', 'regress', 'tag', 'qa')
quiet = lambda *a: None


def fixture(name):
    with open(os.path.join(EXPORTS, name), encoding='utf-8') as f:
        return json.load(f)


INPUTS, EXPECTED = fixture('inputs.json'), fixture('expected.json')


def raw(task_name, item):
    """The raw input of ``predict`` for an input of inputs.json."""
    if task_name == 'tag':
        return dict(text=' '.join(item))
    if task_name == 'qa':
        return dict(question=item[0], passage=item[1])
    return dict(text=item)


def package_outputs(net, vocab, task, task_name, items):
    """Per input: (token ids, segments, logits as transformers lays them out, passage mask)."""
    rows = [row for item in items for row in task.raw_rows(task.raw_inputs(raw(task_name, item)))]
    data = task.encode(rows, vocab, log=quiet)
    out = []
    for i in range(len(rows)):
        n = int(data.valid_lens[i])
        tokens, segments = data.all_token_ids[i, :n], data.all_segments[i, :n]
        y = net((np.array(tokens[None], dtype='int32'), np.array(segments[None], dtype='int32'),
                 np.array(data.valid_lens[i:i + 1])))
        if task_name == 'qa':
            logits = onp.stack([y[0].asnumpy()[0], y[1].asnumpy()[0]])
        else:
            logits = y.asnumpy()[0]
        passage = (segments == 1) & (onp.arange(n) < n - 1)
        out.append((tokens.tolist(), segments.tolist(), logits, passage))
    return out


def check_against_transformers(net, vocab, task, task_name, expected):
    """Token ids equal transformers' and logits within 1e-4 (QA: on the passage's tokens,
    where the package scores answers; elsewhere it gives -1e6)."""
    got = package_outputs(net, vocab, task, task_name, INPUTS[task_name])
    assert len(got) == len(expected['logits'])
    for (ids, segments, logits, passage), want_ids, want_types, want in zip(
            got, expected['input_ids'], expected['token_type_ids'], expected['logits']):
        assert ids == want_ids
        assert segments == want_types
        want = onp.asarray(want, dtype=onp.float64)
        if task_name == 'qa':
            assert passage.sum() >= 5
            onp.testing.assert_allclose(logits[:, passage], want[:, passage], atol=1e-4, rtol=0)
            assert (logits[:, ~passage] < -1e5).all()
        else:
            onp.testing.assert_allclose(logits.reshape(want.shape), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize('task_name', TASKS)
def test_export_is_the_fixture_that_transformers_read(task_name, tmp_path):
    """What the package exports now is, file for file, the folder transformers was run on."""
    out = str(tmp_path / 'out')
    export(os.path.join(EXPORTS, task_name), 'hf', out, log=quiet)
    committed = os.path.join(EXPORTS, task_name + '.hf')
    assert sorted(os.listdir(out)) == sorted(HF_FILES) == sorted(os.listdir(committed))
    for name in ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
        assert filecmp.cmp(os.path.join(out, name), os.path.join(committed, name), shallow=False), name
    with open(os.path.join(out, 'config.json'), encoding='utf-8') as a, \
            open(os.path.join(committed, 'config.json'), encoding='utf-8') as b:
        assert json.load(a) == json.load(b)
    ours, theirs = (load_file(os.path.join(f, 'model.safetensors')) for f in (out, committed))
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name].dtype == onp.float32 and onp.array_equal(ours[name], theirs[name]), name
    # transformers loaded it with every tensor used and none missing
    assert EXPECTED[task_name]['loading'] == dict(missing_keys=[], unexpected_keys=[],
                                                  mismatched_keys=[])


def test_exported_config_is_hugging_faces():
    """architectures, problem_type and id2label/label2id with the display names."""
    configs = {t: json.load(open(os.path.join(EXPORTS, t + '.hf', 'config.json'))) for t in TASKS}
    assert configs['classify']['architectures'] == ['BertForSequenceClassification']
    assert configs['classify']['problem_type'] == 'single_label_classification'
    assert configs['classify']['id2label'] == {'0': 'negative', '1': 'positive'}
    assert configs['classify']['label2id'] == {'negative': 0, 'positive': 1}
    assert configs['regress']['problem_type'] == 'regression'
    assert configs['regress']['id2label'] == {'0': 'LABEL_0'}
    assert configs['tag']['architectures'] == ['BertForTokenClassification']
    assert configs['tag']['id2label'] == {'0': 'O', '1': 'B-ANIM', '2': 'I-ANIM'}
    assert configs['qa']['architectures'] == ['BertForQuestionAnswering']
    assert len(configs['qa']['id2label']) == 2 and 'problem_type' not in configs['qa']
    for config in configs.values():
        assert config['model_type'] == 'bert' and config['hidden_act'] == 'gelu'
        assert 'task' not in config  # told apart from the package's folders
    tokenizer = json.load(open(os.path.join(EXPORTS, 'tag.hf', 'tokenizer_config.json')))
    assert tokenizer['model_max_length'] == 64 and tokenizer['tokenizer_class'] == 'BertTokenizer'


@pytest.mark.parametrize('source', ['package', 'exported'])
@pytest.mark.parametrize('task_name', TASKS)
def test_logits_and_ids_match_transformers(task_name, source):
    """The package's model, and the exported folder loaded back, give transformers' token ids
    and logits (within 1e-4) for classification, regression, tagging and QA."""
    folder = os.path.join(EXPORTS, task_name + ('.hf' if source == 'exported' else ''))
    net, vocab, task = predict.load_model(folder)
    assert task.name == task_name
    check_against_transformers(net, vocab, task, task_name, EXPECTED[task_name])


def test_exported_folder_keeps_the_task():
    """Labels, display names, reader options and lengths come back as they were."""
    for task_name in TASKS:
        _, _, before = predict.read_saved_model(os.path.join(EXPORTS, task_name))
        _, _, after = predict.load_model(os.path.join(EXPORTS, task_name + '.hf'))
        assert {k: v for k, v in before.config.items() if k != 'bert'} == after.config


def test_folder_made_by_transformers_predicts_its_logits():
    """A BertForSequenceClassification saved by transformers (gelu_new, three named classes):
    its token ids and logits, and its labels in predict."""
    expected = json.load(open(os.path.join(MADE, 'expected.json')))
    net, vocab, task = predict.load_model(MADE)
    assert task.name == 'classify' and task.display_labels == ['sad', 'neutral', 'glad']
    assert task.max_len == 64  # min(512, max_position_embeddings)
    got = package_outputs(net, vocab, task, 'classify', INPUTS['classify'])
    for (ids, _, logits, _), want_ids, want in zip(got, expected['input_ids'], expected['logits']):
        assert ids == want_ids
        onp.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)
    text = INPUTS['classify'][0]
    assert predict.predict(net, vocab, task, text=text) == \
        expected['labels'][int(onp.argmax(expected['logits'][0]))]


def test_cli_export_then_predict_evaluate_explain(capsys, tmp_path):
    out = tmp_path / 'exported'
    code, err = cli_run(capsys, 'export', '--model', os.path.join(EXPORTS, 'classify'),
                        '--format', 'hf', '--out', out)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(HF_FILES)
    code, err = cli_run(capsys, 'predict', '--model', out, '--text', 'a very good movie',
                        '--devices', 'cpu')
    assert code == 0, err
    data = tmp_path / 'test.tsv'
    data.write_text('sentence\tlabel\na good movie\tpos\na bad cat\tneg\n', encoding='utf-8')
    capsys.readouterr()
    from gluon_bertft import cli
    assert cli.main(['evaluate', '--model', str(out), '--data', str(data), '--devices', 'cpu']) == 0
    assert 'accuracy' in capsys.readouterr().out
    code, err = cli_run(capsys, 'explain', '--model', out, '--text', 'a good movie',
                        '--method', 'gradxinput', '--out', tmp_path / 'why', '--devices', 'cpu')
    assert code == 0, err
    assert (tmp_path / 'why' / 'explanation.json').exists()


def test_exported_folder_is_a_pretrained_encoder(tmp_path, caplog):
    """finetune --pretrained OUT uses the encoder and reports the classifier as unused."""
    from gluon_bertft.config import FinetuneConfig
    from gluon_bertft.finetune import finetune
    train = tmp_path / 'train.tsv'
    train.write_text('sentence\tlabel\n' + ''.join(
        f'{"a good movie" if i % 2 else "a bad cat"}\t{i % 2}\n' for i in range(16)),
        encoding='utf-8')
    caplog.set_level(logging.WARNING)
    net, _, _ = finetune(FinetuneConfig(
        task='classify', train=str(train), pretrained=os.path.join(EXPORTS, 'classify.hf'),
        max_len=16, batch_size=8, epochs=1, devices='cpu', max_examples=8, out=str(tmp_path / 'run')),
        log=quiet)
    assert 'unused: classifier.*' in caplog.text
    # the encoder started from the export's: the word embeddings moved only by one epoch
    start = load_file(os.path.join(EXPORTS, 'classify.hf', 'model.safetensors'))
    moved = net.encoder.token_embedding.weight.data().asnumpy() - start['bert.embeddings.word_embeddings.weight']
    assert onp.abs(moved).max() < 0.05


def test_one_name_table_both_ways():
    """Exporting and loading use the same table: every HF name a model of each head has
    maps to one of our parameters and back."""
    for arch in hf_tasks.HF_HEADS:
        names = hf_tasks.task_names(2, arch)
        back = hf_tasks.export_names(2, arch)
        assert all(names[theirs] == ours for ours, theirs in back.items())
    assert 'bert.pooler.dense.weight' in hf_tasks.task_names(1, 'BertForSequenceClassification')
    assert 'bert.pooler.dense.weight' not in hf_tasks.task_names(1, 'BertForTokenClassification')


# ---- refusals --------------------------------------------------------------------------------

def hf_copy(tmp_path, source='classify.hf', **changes):
    """A copy of an exported folder with ``changes`` to its config.json (None: delete the key)."""
    folder = tmp_path / 'hfcopy'
    shutil.copytree(os.path.join(EXPORTS, source), folder)
    config = json.loads((folder / 'config.json').read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / 'config.json').write_text(json.dumps(config))
    return folder


def test_book_format_model_is_refused(capsys, tmp_path):
    model = untrained_model('classify', tmp_path)
    refused(capsys, 'export', '--model', model, '--format', 'hf', '--out', tmp_path / 'out',
            match=r'no LayerNorm after the embeddings.*--format mxnet')
    assert not (tmp_path / 'out').exists()


def test_graph_folder_is_refused(capsys, tmp_path):
    folder = tmp_path / 'int8'
    shutil.copytree(os.path.join(EXPORTS, 'classify'), folder)
    (folder / 'model-symbol.json').write_text('{}')
    refused(capsys, 'export', '--model', folder, '--format', 'hf', '--out', tmp_path / 'out',
            match=r'exported graph.*export the float32 model')


@pytest.mark.parametrize('out', ['model', 'inside'])
def test_out_is_never_the_input(capsys, tmp_path, out):
    folder = tmp_path / 'model'
    shutil.copytree(os.path.join(EXPORTS, 'classify'), folder)
    target = folder if out == 'model' else folder / 'hf'
    refused(capsys, 'export', '--model', folder, '--format', 'hf', '--out', target,
            match=r'--out .*(is|is inside) --model')


def test_out_with_other_files_is_refused(capsys, tmp_path):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'notes.txt').write_text('mine')
    refused(capsys, 'export', '--model', os.path.join(EXPORTS, 'classify'), '--format', 'hf',
            '--out', tmp_path / 'out', match=r'holds notes\.txt')


def test_unknown_format_is_refused(capsys, tmp_path):
    code, err = cli_run(capsys, 'export', '--model', os.path.join(EXPORTS, 'classify'),
                        '--format', 'onnx', '--out', tmp_path / 'out')
    assert code == 2 and "invalid choice: 'onnx'" in err


def test_multi_label_folder_is_refused(capsys, tmp_path):
    folder = hf_copy(tmp_path, problem_type='multi_label_classification', gluon_bertft_task=None)
    refused(capsys, 'predict', '--model', folder, '--text', 'a cat',
            match=r'multi_label_classification.*not supported.*sigmoid')


@pytest.mark.parametrize('archs', [['BertForMaskedLM'], ['BertModel'], None, []])
def test_folder_without_a_known_head_is_refused(capsys, tmp_path, archs):
    folder = hf_copy(tmp_path, architectures=archs, gluon_bertft_task=None)
    if archs is None:  # no architectures: still told by model_type
        assert 'model_type' in json.loads((folder / 'config.json').read_text())
    refused(capsys, 'predict', '--model', folder, '--text', 'a cat',
            match=r'"architectures" is .*BertForQuestionAnswering')


def test_head_tensor_missing_is_named(tmp_path):
    from safetensors.numpy import save_file
    folder = hf_copy(tmp_path, gluon_bertft_task=None)
    weights = load_file(str(folder / 'model.safetensors'))
    del weights['classifier.weight']
    save_file(weights, str(folder / 'model.safetensors'))
    with pytest.raises(PretrainedError, match='classifier.weight is missing'):
        predict.load_model(str(folder))


def test_folder_made_elsewhere_reads_default_names_and_tags(tmp_path):
    """Without the package's task block: LABEL_i are classes i; tags decide their scheme;
    problem_type absent with one label is regression."""
    folder = hf_copy(tmp_path, gluon_bertft_task=None, id2label={'0': 'LABEL_0', '1': 'LABEL_1'},
                     label2id=None, problem_type=None)
    _, _, task = predict.load_model(str(folder))
    assert task.config['labels'] == ['0', '1'] and task.display_labels == ['LABEL_0', 'LABEL_1']
    shutil.rmtree(folder)
    folder = hf_copy(tmp_path, 'tag.hf', gluon_bertft_task=None)
    _, _, task = predict.load_model(str(folder))
    assert task.name == 'tag' and task.scheme == 'iob' and task.config['labels'] == ['O', 'B-ANIM', 'I-ANIM']
    shutil.rmtree(folder)
    folder = hf_copy(tmp_path, 'regress.hf', gluon_bertft_task=None, problem_type=None)
    _, _, task = predict.load_model(str(folder))
    assert task.name == 'regress'
