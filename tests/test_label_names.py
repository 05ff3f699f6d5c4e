"""``--label-names``: parsed from pairs or a JSON file, checked against the training labels,
saved in config.json, and shown by predict (terminal and --data), evaluate and finetune's
per-class metrics and explain (whose --label takes either name); older models load as before."""
import json

import mxnet as mx
import numpy as onp
import pytest

from test_resume import quiet
from tiny_data import TINY_ARGS, TINY_RUN, classify_tsv, refused, task_files, untrained_model

from gluon_bertft import FinetuneConfig, cli, finetune
from gluon_bertft.common.errors import ConfigError, DataError, PretrainedError
from gluon_bertft.inference import predict
from gluon_bertft.inference.explain import explain
from gluon_bertft.tasks import labels, make_task

CPU = [mx.cpu()]
NAMES = '0=negative,1=positive'


def numbered(path, n=48, seed=0):
    """A tiny classify file whose labels are stored as SST-2 stores them: 0 and 1."""
    classify_tsv(path, n, seed)
    path.write_text(path.read_text().replace('\tneg\n', '\t0\n').replace('\tpos\n', '\t1\n'))
    return str(path)


@pytest.fixture(scope='module')
def named(tmp_path_factory):
    """A tiny classify run on 0/1 labels with display names: ``(folder, result, log lines)``."""
    folder = tmp_path_factory.mktemp('named')
    lines = []
    config = FinetuneConfig(task='classify', epochs=2, lr=1e-3, label_names=NAMES, out=str(folder / 'run'),
                            **dict(TINY_RUN, train=numbered(folder / 'train.tsv'),
                                   test=numbered(folder / 'test.tsv', 16, 1)))
    _, _, result = finetune(config, log=lines.append)
    return folder, result, lines


# --- parsing and checking ---

def test_pairs_and_json_files(tmp_path):
    assert labels.parse_label_names(' 0 = negative , 1=positive ') == {'0': 'negative', '1': 'positive'}
    path = tmp_path / 'names.json'
    path.write_text(json.dumps({'0': 'negativ', '1': 'positiv'}))
    assert labels.parse_label_names(str(path)) == {'0': 'negativ', '1': 'positiv'}


@pytest.mark.parametrize('value, match', [
    ('0=negative,1', r"'1' is not STORED=NAME"),
    ('0=,1=positive', r"'0=' is not STORED=NAME"),
    ('0=a,0=b', r"'0' is named twice"),
])
def test_bad_pairs_name_the_option(value, match):
    with pytest.raises(ConfigError, match=f'--label-names.*{match}'):
        labels.parse_label_names(value)


@pytest.mark.parametrize('content, match', [
    ('["negative", "positive"]', r'not a JSON object'),
    ('{"0": 1}', r"the name of '0' is 1, not a non-empty string"),
    ('{"0": ""}', r"the name of '0' is '', not a non-empty string"),
])
def test_bad_name_files_name_the_file_and_label(tmp_path, content, match):
    path = tmp_path / 'names.json'
    path.write_text(content)
    with pytest.raises(DataError, match=f'names\\.json: {match}'):
        labels.parse_label_names(str(path))


def fitted(labels_):
    task = make_task('classify')
    task.config['labels'] = list(labels_)
    return task


@pytest.mark.parametrize('value, match', [
    ('2=neutral', r"'2' is not a label of the training data \('0', '1'\)"),
    ('0=same,1=same', r"the display name 'same' is given to two labels \('0', '1'\)"),
    ('0=1', r"the display name '1' is given to two labels \('0', '1'\)"),  # 1 keeps its own
])
def test_names_must_fit_the_training_labels(value, match):
    task = fitted(['0', '1'])
    with pytest.raises(ConfigError, match=f'--label-names {value}: {match}'):
        labels.apply_label_names(task, value)
    assert 'label_names' not in task.config


def test_an_unnamed_label_keeps_its_own_and_either_name_finds_a_class():
    task = fitted(['0', '1', '2'])
    labels.apply_label_names(task, '0=negative,2=positive')
    assert task.display_labels == ['negative', '1', 'positive']
    assert [task.find_label(n, '--label') for n in ('negative', '0', '1', '2', 'x')] == [0, 0, 1, 2, None]
    swapped = fitted(['a', 'b'])
    labels.apply_label_names(swapped, 'a=b,b=a')
    with pytest.raises(ConfigError, match="--label: 'a' is the display name of 'b' and the stored"):
        swapped.find_label('a', '--label')


def test_the_cli_exits_2_on_bad_names(tmp_path, capsys):
    train = numbered(tmp_path / 'train.tsv')
    common = ['finetune', '--task', 'classify', '--train', train, '--out', tmp_path / 'run', *TINY_ARGS]
    refused(capsys, *common, '--label-names', '0=a,5=b', match=r"'5' is not a label of the training data")
    refused(capsys, *common, '--label-names', 'names.json', match=r'--label-names names\.json: no such file')
    refused(capsys, 'finetune', '--task', 'qa', '--train', train, '--label-names', '0=a',
            match='--label-names: applies to the tasks with classes .* not --task qa')
    assert not (tmp_path / 'run').exists()


# --- saved and shown ---

def test_finetune_saves_the_names_and_reports_by_them(named):
    folder, result, lines = named
    config = json.loads((folder / 'run' / 'model' / 'config.json').read_text())
    assert config['labels'] == ['0', '1'] and config['label_names'] == {'0': 'negative', '1': 'positive'}
    assert {'f1[negative]', 'f1[positive]'} <= set(result['test']) | set(result['baseline'])
    assert not any('f1[0]' in line or 'f1[1]' in line for line in lines)
    assert any(line.startswith('test: ') and 'f1[' in line for line in lines)


def test_evaluate_and_predict_show_the_names(named, tmp_path, capsys):
    folder, result, _ = named
    model, test = str(folder / 'run' / 'model'), str(folder / 'test.tsv')
    report = predict.evaluate_file(model, test, devices=CPU)
    assert report == pytest.approx(result['test'])
    assert [k for k in report if k.startswith('f1[')] == [k for k in result['test'] if k.startswith('f1[')]
    net, vocab, task = predict.load_model(model, CPU)
    assert predict.predict(net, vocab, task, text='a lovely film') in ('negative', 'positive')
    out = tmp_path / 'p.jsonl'
    predict.predict_file(model, test, str(out), devices=CPU, log=quiet)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r['label'] for r in records} <= {'negative', 'positive'}
    assert all(set(r['probabilities']) == {'negative', 'positive'} for r in records)
    capsys.readouterr()
    assert cli.main(['predict', '--model', model, '--text', 'a lovely film', '--devices', 'cpu']) == 0
    label, p, other, q = capsys.readouterr().out.replace('(', '').replace(')', '').split()
    assert {label, other} == {'negative', 'positive'} and float(p) >= float(q)


def test_explain_takes_either_name_and_shows_the_display_one(named):
    folder, _, _ = named
    net, vocab, task = predict.load_model(str(folder / 'run' / 'model'), CPU)
    for label in ('positive', '1'):
        found = explain(net, vocab, task, steps=4, label=label, text='a lovely film')
        assert found['targets'][0]['target'] == 'positive'
        assert found['prediction']['label'] in ('negative', 'positive')
    with pytest.raises(ConfigError,
                       match=r"--label 'neutral': not a label of the model \('negative', 'positive'\)"):
        explain(net, vocab, task, steps=4, label='neutral', text='a lovely film')


def test_a_weight_file_may_use_the_display_names(tmp_path):
    path = tmp_path / 'w.json'
    path.write_text(json.dumps({'negative': 2.0, '1': 0.5}))
    lines = []
    config = FinetuneConfig(task='classify', epochs=1, label_names=NAMES, class_weights=str(path),
                            **dict(TINY_RUN, train=numbered(tmp_path / 'train.tsv')))
    finetune(config, log=lines.append)
    assert 'class weights: negative 2, positive 0.5' in lines


def test_tag_names_rename_tags_and_entity_types(tmp_path):
    files = task_files('tag', tmp_path)
    config = FinetuneConfig(task='tag', epochs=1, label_names='B-LOC=B-place,I-LOC=I-place,B-PER=person',
                            out=str(tmp_path / 'run'), **dict(TINY_RUN, **files))
    finetune(config, log=quiet)
    net, vocab, task = predict.load_model(str(tmp_path / 'run' / 'model'), CPU)
    assert task.display_labels == ['O', 'B-place', 'I-place', 'person', 'I-PER']
    assert task.entity_kind('LOC') == 'place' and task.entity_kind('PER') == 'person'
    sentence = task.raw_rows(dict(text='Anna lives in New York'))
    dataset = task.encode(sentence, vocab, log=quiet)
    best = [3, 3, 0, 0, 1, 2, 0]  # <cls> Anna lives in New York <sep>: B-PER O O B-LOC I-LOC
    outputs = [onp.eye(5, dtype=onp.float32)[best] * 9]
    assert task.show(outputs, sentence, dataset) == 'person: Anna; place: New York'
    assert task.records(outputs, sentence, dataset)[0]['tags'] == ['person', 'O', 'O', 'B-place', 'I-place']
    assert task.tags(outputs, sentence, dataset)[0] == ['B-PER', 'O', 'O', 'B-LOC', 'I-LOC']  # scored


def test_snli_labels_may_be_renamed(tmp_path):
    task = make_task('snli')
    task.config['labels'] = ['entailment', 'contradiction', 'neutral']
    labels.apply_label_names(task, 'entailment=follows,contradiction=contradicts')
    assert task.display_labels == ['follows', 'contradicts', 'neutral']


def test_old_models_load_as_before_and_bad_saved_names_are_named(tmp_path):
    path = untrained_model('classify', tmp_path)
    _, _, task = predict.load_model(path, CPU)
    assert 'label_names' not in task.config and task.display_labels == task.config['labels']
    where = tmp_path / 'model' / 'config.json'
    config = json.loads(where.read_text())
    for bad, match in (({'pos': 'neg'}, r"\"label_names\": the display name 'neg' is given to two labels"),
                       ({'neutral': 'x'}, r"\"label_names\": 'neutral' is not a label"),
                       (['x'], r"'label_names' is \['x'\]; expected an object")):
        where.write_text(json.dumps(dict(config, label_names=bad)))
        with pytest.raises(PretrainedError, match=match):
            predict.load_model(path, CPU)
