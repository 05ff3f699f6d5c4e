"""Bad and odd runs (issue 13, kinds 5-8): options checked before any work, a diverging run
stopped, degenerate splits, valid input that must be read, and outputs never half-written.
Kinds 1-4 (input files, model folders, checkpoints): tests/test_bad_input.py."""
import json
import os
import time

import mxnet as mx
import numpy as onp
import pytest
from conftest import TINY, tiny_bert
from hf_tiny import write_tiny_hf_bert
from tiny_data import (TINY_ARGS, TINY_RUN, classify_tsv, cli_run, refused, squad_json,
                       untrained_model, wiki_file)

from gluon_bertft import FinetuneConfig, finetune
from gluon_bertft.common import metrics, threads
from gluon_bertft.common.errors import DivergedError
from gluon_bertft.data import snli, tsv
from gluon_bertft.models import pretrained
from gluon_bertft.tasks import ClassifyTask

PRETRAIN = ['--preset', 'bert.tiny', '--max-len', '32', '--batch-size', '8', '--steps', '2',
            '--devices', 'cpu']


def run(capsys, tmp_path, task, train, *args, match):
    """A refused tiny fine-tuning run of ``task`` (nothing may be written to its --out)."""
    out = tmp_path / 'run'
    line = refused(capsys, 'finetune', '--task', task, '--train', train, *TINY_ARGS, '--out', out,
                   *args, match=match)
    assert not os.path.exists(out)
    return line


# --- 5. options ---

@pytest.mark.parametrize('devices, match', [
    ('cpu:99999999999999999999', r"--devices 'cpu:99999999999999999999': expected auto, cpu, gpu"),
    ('gpu:0', r"--devices 'gpu:0': gpu\(0\) not usable; this MXNet build sees 0 GPU"),
    ('cpu:-1', r"--devices 'cpu:-1': expected"),
    ('cpu:0,cpu:0', 'a device is named twice'),
])
def test_devices_are_checked_at_once(tmp_path, capsys, devices, match):
    start = time.time()
    run(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'), '--devices', devices,
        match=match)
    assert time.time() - start < 5


@pytest.mark.parametrize('command, option, value', [
    ('finetune', '--dropout', '1.5'), ('finetune', '--dropout', '-0.5'), ('finetune', '--dropout', '1.0'),
    ('finetune', '--lr', 'nan'), ('finetune', '--lr', 'inf'), ('finetune', '--lr', '-1'),
    ('finetune', '--warmup', '1'), ('finetune', '--weight-decay', '-1'), ('finetune', '--clip-grad', 'nan'),
    ('finetune', '--seed', '-1'), ('finetune', '--epochs', '0'), ('pretrain', '--dropout', '1'),
    ('pretrain', '--lr', 'nan'), ('pretrain', '--seed', str(2 ** 32)),
    ('launch', '--port', '99999'), ('launch', '--port', '0'), ('launch', '--timeout', '-1'),
    ('launch', '--threads', '0'),
])
def test_numeric_options_are_checked_at_parse_time(tmp_path, capsys, monkeypatch, command, option, value):
    monkeypatch.chdir(tmp_path)  # where launch would write its logs
    args = ['-n', '1', option, value, '--', 'finetune'] if command == 'launch' else [option, value]
    refused(capsys, command, *args, match=f'error: argument {option}: {value}: must|a port is')
    assert os.listdir(tmp_path) == []


def test_max_len_past_the_position_table_is_named_when_the_model_is_loaded(tmp_path, capsys):
    tokens = ['<cls>', '<mask>', '<pad>', '<sep>', '<unk>', 'film']
    folder = pretrained.save_pretrained(tiny_bert(len(tokens)), pretrained.vocab_from_tokens(tokens),
                                        str(tmp_path / 'bert'), dict(TINY, vocab_size=len(tokens)))
    refused(capsys, 'finetune', '--task', 'classify', '--train', classify_tsv(tmp_path / 't.tsv'),
            '--pretrained', folder, *TINY_ARGS[4:], '--max-len', 65, '--out', tmp_path / 'run',
            match='--max-len 65: the BERT has 64 positions')
    refused(capsys, 'pretrain', '--corpus', wiki_file(tmp_path / 'w.tokens'), '--out',
            tmp_path / 'p', *PRETRAIN, '--max-len', 1001,
            match=r'--max-len 1001: longer than the bert.tiny position embedding \(1000\)')
    assert sorted(os.listdir(tmp_path)) == ['bert', 't.tsv', 'w.tokens']


def test_a_thread_setting_that_is_no_number_is_a_warning(capsys, monkeypatch):
    monkeypatch.setattr(threads, 'configured', threads.configured)  # restored after the test
    count = threads.configure(environ={threads.ENV: 'abc'}, modules={})
    assert count == threads.physical_cores()
    assert "warning: GLUON_BERTFT_THREADS='abc' is not cores, mxnet or a positive number" in capsys.readouterr().err


def finite_checkpoint(path):
    """Whether a checkpoint folder is absent, or holds finite weights only."""
    if not os.path.exists(path):
        return True
    return all(onp.isfinite(a.asnumpy()).all() for a in mx.npx.load(os.path.join(path, 'model.params')).values())


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step_and_saves_no_non_finite_weights(tmp_path, capsys):
    out = tmp_path / 'run'
    refused(capsys, 'finetune', '--task', 'classify', '--train', classify_tsv(tmp_path / 't.tsv'),
            *TINY_ARGS, '--lr', '1e20', '--epochs', 2, '--checkpoint-every', 1, '--out', out,
            match=r'(training loss became nan by step \d+ \(epoch \d, batch \d\)|not written at epoch)')
    assert not os.path.exists(out / 'model') and finite_checkpoint(out / 'checkpoint')
    refused(capsys, 'pretrain', '--corpus', wiki_file(tmp_path / 'w.tokens'), '--out',
            tmp_path / 'bert', *PRETRAIN, '--lr', '1e20', '--steps', 4, '--checkpoint-every', 1,
            match=r'(training loss became nan by step \d|bert\.ckpt: not written at step \d)')
    assert not os.path.exists(tmp_path / 'bert') and finite_checkpoint(tmp_path / 'bert.ckpt')


@pytest.mark.slow
def test_a_nan_loss_stops_at_the_first_sync_point(tmp_path, monkeypatch):
    loss = ClassifyTask.loss
    monkeypatch.setattr(ClassifyTask, 'loss', staticmethod(lambda p, y: loss(p, y) * float('nan')))
    config = FinetuneConfig(task='classify', train=classify_tsv(tmp_path / 't.tsv'), epochs=1,
                            out=str(tmp_path / 'run'), checkpoint_every=1, **TINY_RUN)
    with pytest.raises(DivergedError, match=r'the training loss became nan by step 1 \(epoch 1, '
                                            r'batch 1\): training diverged; nothing more was saved'):
        finetune(config, log=lambda *_: None)
    assert not os.path.exists(tmp_path / 'run')


# --- 6. splits left empty or degenerate ---

@pytest.mark.parametrize('args, match', [
    (('--valid-fraction', '0.99'), r't\.tsv: no training examples left after the split \(--test-fraction, --valid-fraction'),
    (('--test-fraction', '0'), r't\.tsv: no test examples left after the split \(--test-fraction'),
    (('--test-fraction', '0.99'), r't\.tsv: no training examples left after the split'),
    (('--max-len', '2'), r'--max-len 2: --task classify needs at least 3'),
])
def test_empty_splits_name_the_option(tmp_path, capsys, args, match):
    run(capsys, tmp_path, 'classify', classify_tsv(tmp_path / 't.tsv'), *args, match=match)


def long_answers(path):
    """A SQuAD file whose answers are 40 words long: no 32-token window holds one."""
    data = json.load(open(squad_json(path)))
    for para in data['data'][0]['paragraphs']:
        text = ' '.join(['word'] * 40)
        para['qas'][0]['answers'] = [dict(text=text, answer_start=len(para['context']) + 1)]
        para['context'] += ' ' + text
    path.write_text(json.dumps(data))
    return str(path)


def written(text, suffix=''):
    return lambda path: path.with_suffix(suffix).write_text(text) and str(path.with_suffix(suffix))


@pytest.mark.parametrize('task, make, args, match', [
    ('classify', written('sentence\tlabel\n' + 'a film\tpos\n' * 20), (),
     r't:\d+: the training data has one label only'),
    ('tag', written(''.join(f'w{i} NN I-NP O\n\n' for i in range(20))), (),
     r't: every word of the training data is tagged O'),
    ('regress', written('sentence\tscore\n' + 'a film\t3.0\n' * 20), ('--text-columns', 'sentence'),
     r"t:\d+: every training score is '3\.0'; there is nothing to learn"),
    ('snli', written((json.dumps(dict(sentence1='A man sleeps .', sentence2='A man rests .',
                                      gold_label='entailment')) + '\n') * 20, '.jsonl'), (),
     r'the SNLI training data has one label only \(entailment\)'),
    ('qa', long_answers, ('--stride', '8', '--max-query-len', '8'),
     r't: no training window holds an answer \(--max-len 32, --stride 8, --max-query-len 8\)'),
])
def test_degenerate_training_data_is_an_error(tmp_path, capsys, task, make, args, match):
    run(capsys, tmp_path, task, make(tmp_path / 't'), *args, match=match)


def test_options_that_the_model_or_kvstore_cannot_take_are_named(tmp_path, capsys):
    train = classify_tsv(tmp_path / 't.tsv')
    write_tiny_hf_bert(str(tmp_path / 'hf'))
    refused(capsys, 'finetune', '--task', 'classify', '--train', train, '--pretrained', tmp_path / 'hf',
            *TINY_ARGS[4:], '--tokenizer', 'basic', '--out', tmp_path / 'run',
            match='--tokenizer basic: .* brings its own WordPiece tokenizer')
    refused(capsys, 'finetune', '--task', 'classify', '--train', train, *TINY_ARGS,
            '--lazy-embedding', '--kvstore', 'dist_sync', '--out', tmp_path / 'run2',
            match='--lazy-embedding: not with a distributed kvstore')
    assert sorted(os.listdir(tmp_path)) == ['hf', 't.tsv']


def test_constant_scores_make_pearson_undefined():
    report = metrics.correlations([2.0, 2.0, 2.0], [1.0, 2.5, 3.0])
    assert report['pearson'] is None and report['spearman'] is None
    assert metrics.format_metrics(report).startswith('pearson undefined, spearman undefined, mse ')


# --- 7. valid input that must be read ---

def test_snli_txt_ending_in_blank_lines_and_crlf(tmp_path):
    header = 'gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1\tsentence2'
    path = tmp_path / 'snli_1.0_dev.txt'
    path.write_bytes(f'{header}\r\nneutral\t( A man )\t( A dog )\tA man\tA dog\r\n\r\n\n'.encode())
    assert snli.read_snli(str(path)) == (['A man'], ['A dog'], [2])


@pytest.mark.parametrize('name', ['x.JSONL', 'x.json', 'x.Json'])
def test_json_lines_extensions_in_any_case(tmp_path, name):
    path = tmp_path / name
    path.write_text('{"gold_label": "neutral", "sentence1": "a", "sentence2": "b", "sentence": "a", "label": "x"}\n')
    assert snli.read_snli(str(path)) == (['a'], ['b'], [2])
    assert [r.texts for r in tsv.read_table(str(path))] == [('a',)]


@pytest.fixture(scope='module')
def qa_model(tmp_path_factory):
    """A saved QA model folder (untrained: its weights as initialized)."""
    return untrained_model('qa', tmp_path_factory.mktemp('qa'))


def test_predict_with_a_whitespace_passage_is_a_clear_error(qa_model, capsys):
    refused(capsys, 'predict', '--model', qa_model, '--question', 'Where?', '--passage', ' \t ',
            '--devices', 'cpu', match='error: qa: give --question and --passage')
    code, _ = cli_run(capsys, 'predict', '--model', qa_model, '--question', 'Where does Anna live ?',
                      '--passage', 'Anna lives in Paris .', '--devices', 'cpu')
    assert code == 0


def test_two_devices_and_a_short_last_batch_replace_an_existing_output_folder(tmp_path, capsys):
    train = classify_tsv(tmp_path / 'train.tsv', 33)
    out = tmp_path / 'run'
    os.makedirs(out / 'model')
    (out / 'model' / 'stale.txt').write_text('from an earlier run')
    code, err = cli_run(capsys, 'finetune', '--task', 'classify', '--train', train, '--test',
                        classify_tsv(tmp_path / 'test.tsv', 16, seed=1), *TINY_ARGS,
                        '--devices', 'cpu:0,cpu:1', '--out', out)  # 33 = 16 + 16 + 1 example
    assert code == 0, err
    assert sorted(os.listdir(out / 'model')) == ['config.json', 'model.params', 'vocab.json']
    assert json.loads((out / 'result.json').read_text())['test']['accuracy'] >= 0


# --- 8. half-written output: the output path is checked before any work ---

@pytest.mark.parametrize('command, output, match', [
    ('finetune', 'file', r'--out .*file: exists as a file; give a folder path'),
    ('finetune', 'file/run', r'--out .*file/run: .*file is a file, not a folder'),
    ('pretrain', 'file', r'--out .*file: exists as a file; give a folder path'),
    ('pretrain', 'folder.zip', r'--out .*folder\.zip: exists as a folder; give a file path'),
    ('pretrain', 'file.ckpt', r'--checkpoint .*file\.ckpt: exists as a file'),
    ('predict', 'folder', r'--output .*folder: exists as a folder; give a file path'),
])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, command, output, match):
    for name in ('file', 'file.ckpt'):
        (tmp_path / name).write_text('keep')
    for name in ('folder', 'folder.zip'):
        (tmp_path / name).mkdir()
    train, corpus = classify_tsv(tmp_path / 't.tsv'), wiki_file(tmp_path / 'w.tokens')
    out = str(tmp_path / output)
    if command == 'finetune':
        args = ['--task', 'classify', '--train', train, *TINY_ARGS, '--out', out]
    elif command == 'pretrain':
        where = ['--checkpoint', out, '--out', tmp_path / 'bert'] if out.endswith('.ckpt') else ['--out', out]
        args = ['--corpus', corpus, *PRETRAIN, *where]
    else:
        args = ['--model', tmp_path / 'none', '--data', train, '--output', out]
    before = sorted(os.walk(tmp_path))
    refused(capsys, command, *args, match=match)
    assert sorted(os.walk(tmp_path)) == before
    assert (tmp_path / 'file').read_text() == 'keep'
