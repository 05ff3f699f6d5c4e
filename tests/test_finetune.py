"""The one orchestrator, ``finetune(config)``, and the book's entry point ``finetune_snli``:
splits, outputs, several devices, best-epoch keeping by the task metric, pretrained input."""
import json
import os

import mxnet as mx
import pytest
from conftest import SAMPLE, tiny_bert
from tiny_data import TINY_RUN, classify_tsv, task_files

from gluon_bertft import FinetuneConfig, finetune, finetune_snli
from gluon_bertft.common.errors import ConfigError, DataError
from gluon_bertft.finetune import read_splits, split_rows, task_of_config
from gluon_bertft.models.pretrained import save_pretrained

TINY_SNLI = dict(train_file=SAMPLE, pretrained_model='random', preset='bert.tiny', max_len=32)


def quiet(*args):
    pass


@pytest.mark.slow
def test_finetune_snli_writes_its_outputs_and_logs_the_books_lines(tmp_path):
    lines = []
    net, vocab, result = finetune_snli(num_epochs=1, batch_size=64, max_examples=200,
                                       out=str(tmp_path / 'run'), log=lines.append, **TINY_SNLI)
    assert lines[0].startswith('BERT: random initialization (no pretraining), 2 blocks, 128 '
                               f'hidden, {len(vocab)} tokens; snli: 200 training, 200 test examples')
    assert 'read 200 examples' in lines
    epoch = next(l for l in lines if l.startswith('epoch '))
    assert epoch.startswith('epoch 1/1: loss ') and ', train acc ' in epoch and ', test acc ' in epoch
    assert any(l.endswith(' examples/sec on [cpu(0)]') for l in lines)
    assert any(l.startswith('test: accuracy ') for l in lines)
    assert any(l.startswith('baseline (the majority class of the training rows, predicted for '
                            'every row): accuracy ') for l in lines)
    assert sorted(os.listdir(tmp_path / 'run')) == ['model', 'result.json', 'training_curve.png']
    saved = json.loads((tmp_path / 'run' / 'result.json').read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(result) >= {'train_loss', 'train_acc', 'test_acc', 'valid', 'examples_per_sec',
                           'test', 'baseline'}
    assert result['test']['accuracy'] == pytest.approx(result['test_acc'][-1])
    with pytest.raises(ConfigError, match='--batch-size 0: must be a positive integer'):
        finetune_snli(batch_size=0, **TINY_SNLI)  # before anything is read


@pytest.mark.slow
def test_finetune_from_a_saved_pretrained_zip(tmp_path, vocab):
    bert = tiny_bert(len(vocab))
    config = dict(vocab_size=len(vocab), num_hiddens=32, ffn_num_hiddens=64, num_heads=2,
                  num_blks=2, max_len=64)
    path = save_pretrained(bert, vocab, str(tmp_path / 'bert.zip'), config)
    lines = []
    finetune_snli(train_file=SAMPLE, pretrained_model=path, num_epochs=1, batch_size=64,
                  max_examples=200, max_len=64, out=str(tmp_path / 'run'), log=lines.append)
    assert lines[0].startswith(f'BERT: {path}, 2 blocks, 32 hidden, {len(vocab)} tokens')
    saved = json.loads((tmp_path / 'run' / 'model' / 'config.json').read_text())
    assert {k: saved['bert'][k] for k in config} == config
    assert (saved['task'], saved['max_len'], saved['pretrained']) == ('snli', 64, path)
    with pytest.raises(ConfigError, match='--max-len 128: the BERT has 64 positions'):
        finetune_snli(train_file=SAMPLE, pretrained_model=path, max_len=128)


def test_33_pairs_on_two_devices_with_a_last_batch_of_one(monkeypatch):
    """Batch 32 over cpu:0 and cpu:1: the last batch of 1 pair goes to one device only."""
    shards = []
    real = mx.gluon.utils.split_and_load

    def split_and_load(data, ctx_list, **kwargs):
        parts = real(data, ctx_list, **kwargs)
        shards.append([p.shape[0] for p in parts])
        return parts
    monkeypatch.setattr(mx.gluon.utils, 'split_and_load', split_and_load)
    lines = []
    net, _, result = finetune_snli(num_epochs=2, batch_size=32, max_examples=33,
                                   devices='cpu:0,cpu:1', log=lines.append,
                                   max_test_examples=33, **TINY_SNLI)
    # (a vocabulary built from 33 pairs misses half the test rows' characters: warned first)
    assert any('snli: 33 training, 33 test examples; devices [cpu(0), cpu(1)]' in l for l in lines)
    assert len(result['train_loss']) == len(result['test_acc']) == 2
    assert 0 <= result['test']['accuracy'] <= 1
    assert any(l.endswith('examples/sec on [cpu(0), cpu(1)]') for l in lines)
    assert [1] in shards and [16, 16] in shards  # the batch of 1, and the full ones split
    assert min(min(s) for s in shards) >= 1  # never an empty shard
    for p in net.collect_params().values():
        assert (p.data(mx.cpu(0)) == p.data(mx.cpu(1))).all()


@pytest.mark.parametrize('task, metric', [('snli', 'accuracy'), ('classify', 'accuracy'),
                                          ('tag', 'f1'), ('qa', 'f1'), ('regress', 'pearson')])
@pytest.mark.slow
def test_best_epoch_is_kept_by_the_task_metric(task, metric, tmp_path):
    if task == 'regress':
        rows = [f'{"great " * (i % 4)}film {i}\t{i % 4}' for i in range(48)]
        (tmp_path / 'train.tsv').write_text('sentence\tscore\n' + '\n'.join(rows) + '\n')
        files = dict(train=str(tmp_path / 'train.tsv'), text_columns=('sentence',))
    else:
        files = task_files(task, tmp_path)
    lines = []
    config = FinetuneConfig(task=task, epochs=3, valid_fraction=0.25, lr=1e-3,
                            out=str(tmp_path / 'run'), **dict(TINY_RUN, **files))
    _, _, result = finetune(config, log=lines.append)
    assert result['valid_metric'] == metric
    assert len(result['valid']) == 3
    best = result['best_epoch']
    assert result['valid'][best - 1] == max(result['valid'])
    assert best == result['valid'].index(max(result['valid'])) + 1  # the first of equals
    assert sum(f', valid {metric} ' in l for l in lines) == 3
    if best != 3:
        assert f'kept epoch {best} (best valid {metric} {max(result["valid"]):.3f})' in lines
    saved = json.loads((tmp_path / 'run' / 'result.json').read_text())
    assert saved['valid_metric'] == metric and saved['best_epoch'] == best


def test_splits_are_seeded_disjoint_and_capped_after_the_split(tmp_path):
    rows = list(range(100))
    rest, held = split_rows(rows, 0.2, seed=3)
    assert len(held) == 20 and sorted(rest + held) == rows
    assert (rest, held) == split_rows(rows, 0.2, seed=3) != split_rows(rows, 0.2, seed=4)
    train = classify_tsv(tmp_path / 'train.tsv', 40)
    config = FinetuneConfig(task='classify', train=train, test_fraction=0.25, valid_fraction=0.2,
                            max_examples=20, max_test_examples=5)
    files, train_rows, test_rows, valid_rows = read_splits(task_of_config(config), config)
    assert files == (train, None)
    assert (len(train_rows), len(test_rows), len(valid_rows)) == (16, 5, 4)
    wheres = [r.where for r in train_rows + test_rows + valid_rows]
    assert len(set(wheres)) == len(wheres)  # no example in two splits
    # the same test rows whatever --max-examples takes of the rest
    other = FinetuneConfig(task='classify', train=train, test_fraction=0.25, max_test_examples=5)
    assert read_splits(task_of_config(other), other)[2] == test_rows
    empty = FinetuneConfig(task='classify', train=classify_tsv(tmp_path / 'two.tsv', 2),
                           test_fraction=0.5, valid_fraction=0.5)
    with pytest.raises(DataError, match=r'two\.tsv: no validation examples left after the split'):
        read_splits(task_of_config(empty), empty)


def test_missing_files_fail_before_training(tmp_path):
    with pytest.raises(DataError, match=r'none\.tsv: cannot read \(No such file'):
        finetune(FinetuneConfig(task='classify', train=str(tmp_path / 'none.tsv'), **TINY_RUN),
                 log=quiet)
    with pytest.raises(DataError, match='not a folder with snli_1.0_train'):
        finetune(FinetuneConfig(task='snli', data=str(tmp_path / 'none'), **TINY_RUN), log=quiet)
    assert os.listdir(tmp_path) == []
