"""Saved models of every task: the one folder layout, loading (also folders of earlier
versions), evaluation on a file, predictions for raw input and for every input of a file."""
import csv
import json
import os
import types

import mxnet as mx
import numpy as onp
import pytest
from conftest import SAMPLE, TINY, tiny_bert
from mxnet import np
from tiny_data import TINY_RUN, classify_tsv, conll_file, once_per_task, squad_json, task_files

from gluon_bertft import ConfigError, FinetuneConfig, cli, finetune
from gluon_bertft.common import storage
from gluon_bertft.common.errors import DataError, PretrainedError
from gluon_bertft.data.batching import BatchIter
from gluon_bertft.data.snli import LABELS, SNLIBERTDataset, read_snli
from gluon_bertft.inference import predict
from gluon_bertft.models.build import CONFIG_KEYS
from gluon_bertft.models.heads import BERTClassifier

CPU = [mx.cpu()]


def quiet(*args):
    pass


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """A model folder of each task, trained one epoch: ``(folder, net, result, files)``, made once."""
    def make(task, folder):
        files = task_files(task, folder)
        config = FinetuneConfig(task=task, epochs=1, out=str(folder / 'run'),
                                **dict(TINY_RUN, **files))
        net, _, result = finetune(config, log=quiet)
        return folder / 'run' / 'model', net, result, dict(files, folder=folder)
    return once_per_task(tmp_path_factory, make)


@pytest.mark.parametrize('task', ['snli', 'classify', 'tag', 'qa'])
def test_a_saved_model_loads_and_evaluates_as_trained(task, models):
    path, net, result, files = models(task)
    assert sorted(os.listdir(path)) == ['config.json', 'model.params', 'vocab.json']
    config = json.loads((path / 'config.json').read_text())
    assert config['task'] == task and config['max_len'] == TINY_RUN['max_len']
    assert {k: config['bert'][k] for k in CONFIG_KEYS if k != 'vocab_size'} == \
        dict(num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_blks=2, max_len=1000)
    loaded, vocab, loaded_task = predict.load_model(str(path), CPU)
    assert loaded_task.name == task and loaded_task.config['labels'] == config['labels']
    report = predict.evaluate_file(str(path), files['test'], batch_size=8, devices=CPU)
    assert report == pytest.approx(result['test'], abs=1e-6)


@pytest.mark.parametrize('task, inputs, check', [
    ('snli', dict(premise='A man plays a guitar.', hypothesis='A man plays music.'),
     lambda out: out in LABELS),
    ('classify', dict(text='a great film'), lambda out: out in ('neg', 'pos')),
    ('tag', dict(text='Anna flew to New York'),
     lambda out: out == '(no entity)' or all(e.split(': ')[0] in ('LOC', 'PER') for e in out.split('; '))),
    ('qa', dict(question='Where does Anna live ?', passage='Anna lives in Rome .'),
     lambda out: out in 'Anna lives in Rome .'),
])
def test_predict_raw_input(task, inputs, check, models):
    path, _, _, _ = models(task)
    net, vocab, loaded_task = predict.load_model(str(path), CPU)
    out = predict.predict(net, vocab, loaded_task, **inputs)
    assert isinstance(out, str) and check(out), out


def test_predict_snli_as_the_book(models):
    path, trained, _, _ = models('snli')
    net, vocab, task = predict.load_model(str(path), CPU)
    label = predict.predict_snli(net, vocab, 'A man is sleeping .', 'Nobody sleeps .', task.max_len)
    assert label in LABELS
    assert label == predict.predict_snli(trained, vocab, 'a man is sleeping .'.split(),
                                         ['nobody', 'sleeps', '.'], task.max_len)


def test_save_model_then_load_model_predicts_the_same(tmp_path, vocab):
    net = BERTClassifier(tiny_bert(len(vocab)), 3)
    net.output.initialize(mx.init.Normal(0.2), ctx=CPU)
    (x, _), = BatchIter.from_dataset(SNLIBERTDataset(tuple(c[:16] for c in read_snli(SAMPLE)), 64,
                                                     vocab), 16)
    bert = dict(TINY, vocab_size=len(vocab))
    storage.save_model(net, vocab, str(tmp_path / 'model'),
                       dict(task='snli', max_len=64, labels=list(LABELS), bert=bert))
    loaded, loaded_vocab, task = predict.load_model(str(tmp_path / 'model'), CPU)
    assert loaded_vocab.idx_to_token == vocab.idx_to_token and task.max_len == 64
    assert float(np.abs(loaded(x) - net(x)).max()) < 1e-6
    label = predict.predict_snli(loaded, loaded_vocab, 'A man is sleeping .', 'Nobody sleeps .')
    assert label in LABELS
    assert label == predict.predict_snli(net, vocab, 'a man is sleeping .'.split(),
                                         ['nobody', 'sleeps', '.'])
    assert label == predict.predict(loaded, loaded_vocab, task, premise='A man is sleeping.',
                                    hypothesis='Nobody sleeps.')


def read_records(path):
    if str(path).endswith('.csv'):
        with open(path, encoding='utf-8', newline='') as f:
            return list(csv.DictReader(f))
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('ext', ['jsonl', 'csv'])
def test_predict_file_classify_one_record_per_row(ext, models, tmp_path, capsys):
    path, _, _, _ = models('classify')
    data = classify_tsv(tmp_path / 'new.tsv', 10, seed=5)
    out = tmp_path / f'pred.{ext}'
    assert cli.main(['predict', '--model', str(path), '--data', data, '--output', str(out),
                     '--devices', 'cpu']) == 0
    assert f'wrote 10 predictions to {out}' in capsys.readouterr().out
    records = read_records(out)
    assert [r['where'] for r in records] == [f'{data}:{i}' for i in range(2, 12)]
    for rec in records:
        probs = rec['probabilities'] if ext == 'jsonl' else json.loads(rec['probabilities'])
        assert set(probs) == {'neg', 'pos'} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
        assert rec['label'] == max(probs, key=probs.get)
    # the file's labels are not needed: the same rows without the label column
    lines = open(data).read().splitlines()
    (tmp_path / 'nolabel.tsv').write_text('\n'.join(l.split('\t')[0] for l in lines) + '\n')
    n = predict.predict_file(str(path), str(tmp_path / 'nolabel.tsv'), str(tmp_path / 'p2.jsonl'),
                             devices=CPU, log=quiet)
    assert n == 10
    assert [r['label'] for r in read_records(tmp_path / 'p2.jsonl')] == \
        [r['label'] for r in records]


@pytest.mark.parametrize('ext', ['jsonl', 'csv'])
def test_predict_file_is_atomic(ext, models, tmp_path, monkeypatch):
    path, _, _, _ = models('classify')
    data = classify_tsv(tmp_path / 'new.tsv', 10, seed=5)
    out = tmp_path / f'pred.{ext}'
    out.write_text('the predictions of an earlier run\n')

    def fail(*args, **kwargs):
        fail.calls += 1
        if fail.calls > 3:
            raise OSError('disk full')
        return json.dumps(*args, **kwargs)
    fail.calls = 0
    monkeypatch.setattr(predict, 'json', types.SimpleNamespace(dumps=fail))
    with pytest.raises(OSError, match='disk full'):
        predict.predict_file(str(path), data, str(out), devices=CPU, log=quiet)
    assert fail.calls > 3  # it failed while writing
    assert out.read_text() == 'the predictions of an earlier run\n'
    assert sorted(os.listdir(tmp_path)) == ['new.tsv', f'pred.{ext}']  # no partial file
    monkeypatch.undo()
    with pytest.raises(Exception):
        predict.predict_file(str(path), str(tmp_path / 'missing.tsv'), str(tmp_path / 'p.jsonl'),
                             devices=CPU, log=quiet)
    assert not (tmp_path / 'p.jsonl').exists()


def predicted(path, data, out, count):
    """The records ``predict_file`` wrote for ``data``, checked to be ``count``."""
    assert predict.predict_file(str(path), data, str(out), devices=CPU, log=quiet) == count
    return read_records(out)


def test_predict_file_tag_words_tags_and_confidence(models, tmp_path):
    path, _, _, _ = models('tag')
    data = conll_file(tmp_path / 'new.conll', 6, seed=7, tagged=False)
    records = predicted(path, data, tmp_path / 'tags.jsonl', 6)
    text = open(data).read().split('\n\n')[1:]
    assert [r['words'] for r in records] == [block.split() for block in text]
    assert [r['where'] for r in records][0] == f'{data}:3'
    tag_names = json.loads((path / 'config.json').read_text())['labels']
    for rec in records:
        assert len(rec['tags']) == len(rec['confidence']) == len(rec['words'])
        assert set(rec['tags']) <= set(tag_names) and all(0 < c <= 1 for c in rec['confidence'])
    # a tagged file is read as words too
    tagged = conll_file(tmp_path / 'tagged.conll', 6, seed=7)
    predict.predict_file(str(path), tagged, str(tmp_path / 'tags2.jsonl'), devices=CPU, log=quiet)
    assert read_records(tmp_path / 'tags2.jsonl') == [dict(r, where=r['where'].replace(
        'new.conll', 'tagged.conll')) for r in records]


def test_predict_file_qa_answers_and_scores(models, tmp_path):
    path, _, _, _ = models('qa')
    data = squad_json(tmp_path / 'questions.json', 5, seed=9, answers=False)
    records = predicted(path, data, tmp_path / 'answers.csv', 5)
    passages = [p['context'] for p in json.load(open(data))['data'][0]['paragraphs']]
    assert [r['id'] for r in records] == [f'q{i}' for i in range(5)]
    for rec, passage in zip(records, passages):
        assert rec['answer'] and rec['answer'] in passage
        assert onp.isfinite(float(rec['score']))


def test_predict_file_snli_keeps_pairs_without_a_gold_label(models, tmp_path):
    path, _, _, _ = models('snli')
    pairs = [dict(gold_label='neutral', sentence1='A man sleeps .', sentence2='He dreams .'),
             dict(gold_label='-', sentence1='A dog runs .', sentence2='An animal moves .'),
             dict(sentence1='Two kids play .', sentence2='Nobody plays .')]
    data = tmp_path / 'pairs.jsonl'
    data.write_text(''.join(json.dumps(p) + '\n' for p in pairs))
    out = tmp_path / 'labels.jsonl'
    assert predict.predict_file(str(path), str(data), str(out), devices=CPU, log=quiet) == 3
    records = read_records(out)
    assert [r['where'] for r in records] == [f'{data}#{i}' for i in (1, 2, 3)]
    assert all(r['label'] in LABELS and set(r['probabilities']) == set(LABELS) for r in records)


def old_snli_folder(path, vocab, seq_len=16):
    """A classifier folder as versions before the one pipeline wrote it: a flat config.json
    with ``seq_len`` and ``num_classes`` and no task, ``classifier.params``."""
    net = BERTClassifier(tiny_bert(len(vocab), seed=4), 3)
    net.output.initialize(mx.init.Normal(0.2), ctx=CPU)
    os.makedirs(path)
    with open(os.path.join(path, 'vocab.json'), 'w') as f:
        json.dump(vocab.idx_to_token, f)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(dict(TINY, vocab_size=len(vocab), seq_len=seq_len, num_classes=3,
                       pretrained='random', train_file=SAMPLE, test_file=None, seed=0), f)
    net.save_parameters(os.path.join(path, 'classifier.params'))
    return net


def test_an_snli_classifier_folder_of_an_earlier_version_still_works(tmp_path, vocab, capsys):
    path = str(tmp_path / 'classifier')
    old = old_snli_folder(path, vocab)
    net, loaded_vocab, task = predict.load_model(path, CPU)
    assert task.name == 'snli' and task.max_len == 16  # the example length, not the positions
    assert loaded_vocab.idx_to_token == vocab.idx_to_token
    (x, _), = BatchIter.from_dataset(SNLIBERTDataset(tuple(c[:8] for c in read_snli(SAMPLE)), 16,
                                                     vocab), 8)
    assert float(np.abs(net(x) - old(x)).max()) < 1e-5
    label = predict.predict(net, loaded_vocab, task, premise='A man sleeps.', hypothesis='He is awake.')
    assert label in LABELS
    report = predict.evaluate_file(path, SAMPLE, devices=CPU)
    assert set(report) == {'accuracy', 'macro_f1'} | {f'f1[{n}]' for n in LABELS}
    capsys.readouterr()
    assert cli.main(['predict', '--model', path, '--devices', 'cpu', '--premise', 'A dog runs.',
                     '--hypothesis', 'An animal moves.']) == 0
    assert capsys.readouterr().out.split()[0] in LABELS


def test_broken_model_folders_are_named(tmp_path, vocab, models):
    with pytest.raises(PretrainedError, match='nowhere: no such model folder'):
        predict.load_model(str(tmp_path / 'nowhere'))
    path = str(tmp_path / 'm')
    old_snli_folder(path, vocab)
    with open(os.path.join(path, 'vocab.json'), 'w') as f:
        json.dump(vocab.idx_to_token[:-1], f)
    with pytest.raises(PretrainedError, match=f'the vocabulary has {len(vocab) - 1} tokens, '
                                              f'config.json says vocab_size {len(vocab)}'):
        predict.load_model(path)
    os.remove(os.path.join(path, 'vocab.json'))
    with pytest.raises(PretrainedError, match=r'not a saved model \(no vocab.json\)'):
        predict.load_model(path)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(dict(task='snli', bert=dict(vocab_size=3)), f)
    with pytest.raises(PretrainedError, match=r'config\.json: no num_hiddens, ffn_num_hiddens'):
        predict.load_model(path)


@pytest.mark.parametrize('task, inputs, flag', [
    ('classify', dict(text='a great film', question='why?'), '--question'),
    ('snli', dict(premise='A man plays.', hypothesis='A man plays music.', text='x'), '--text'),
    ('tag', dict(text='Anna flew', text_b='home'), '--text-b'),
    ('qa', dict(question='Where?', passage='Anna lives in Rome .', premise='x'), '--premise'),
])
def test_an_input_the_task_does_not_take_is_refused(task, inputs, flag, models, capsys):
    """Each task's RAW_INPUTS: predict (API and CLI) never ignores an input silently."""
    path, _, _, _ = models(task)
    net, vocab, loaded_task = predict.load_model(str(path), CPU)
    with pytest.raises(ConfigError, match=f'{flag}: {task} does not take it'):
        predict.predict(net, vocab, loaded_task, **inputs)
    args = [a for k, v in inputs.items() for a in (f'--{k.replace("_", "-")}', v)]
    assert cli.main(['predict', '--model', str(path), '--devices', 'cpu', *args]) == 2
    assert f'error: {flag}: {task} does not take it' in capsys.readouterr().err


@pytest.mark.parametrize('task, inputs, match', [
    ('classify', dict(text='\u200b\u2060'), 'give 1 text'),
    ('qa', dict(question='Where?', passage='\u200b\u200c\u200d'), 'qa: give --question and --passage'),
    ('snli', dict(premise='A dog.', hypothesis='\x07'), 'snli: give --premise and --hypothesis'),
    ('classify', dict(text='\udcff'), r'--text: not valid Unicode text \(a lone surrogate, U\+DCFF'),
])
def test_text_with_nothing_visible_or_invalid_is_refused(task, inputs, match, models):
    """Issue 24, kind 7: no prediction for invisible text, no traceback for a lone surrogate."""
    path, _, _, _ = models(task)
    net, vocab, loaded_task = predict.load_model(str(path), CPU)
    with pytest.raises((DataError, ConfigError), match=match):
        predict.predict(net, vocab, loaded_task, **inputs)


def test_predict_data_refuses_a_row_with_an_extra_field(models, tmp_path, capsys):
    """A TSV row with a tab inside its text is named, not predicted from its first field."""
    path, _, _, _ = models('classify')
    data = tmp_path / 'd.tsv'
    data.write_text('sentence\na fine film\na tab\tinside\n')
    assert cli.main(['predict', '--model', str(path), '--data', str(data), '--output',
                     str(tmp_path / 'p.jsonl'), '--devices', 'cpu']) == 2
    assert 'd.tsv:3: 2 fields, but the header has 1' in capsys.readouterr().err
    assert not (tmp_path / 'p.jsonl').exists()
