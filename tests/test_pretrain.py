"""Pretraining data (§15.9) against d2l, the MLM + NSP loop (§15.10), checkpoints and resume."""
import collections
import json
import os
import random

import mxnet as mx
import numpy as onp
import pytest
from conftest import SAMPLE, shared_file
from d2l import mxnet as d2l
from mxnet import gluon

from gluon_bertft import pretrain
from gluon_bertft.cli import main
from gluon_bertft.common.errors import ConfigError, DataError, PretrainedError
from gluon_bertft.data.batching import BatchIter
from gluon_bertft.data.snli import SNLIBERTDataset, read_snli
from gluon_bertft.data.wikitext import PretrainIter, WikiTextDataset, read_wiki
from gluon_bertft.models import pretrained
from gluon_bertft.models.heads import BERTClassifier
from gluon_bertft.training.loop import train
from gluon_bertft.training.trainer import make_trainer

ARRAYS = ('all_token_ids', 'all_segments', 'valid_lens', 'all_pred_positions', 'all_mlm_weights',
          'all_mlm_labels', 'nsp_labels')
RUN = dict(preset='bert.tiny', batch_size=32, max_len=64, devices=[mx.cpu()], log=lambda *a: None)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """A folder holding the first 600 lines of WikiText-2's validation file as wiki.train.tokens."""
    with open(shared_file('wikitext-2', 'wiki.valid.tokens'), encoding='utf-8') as f:
        lines = f.readlines()[:600]
    folder = tmp_path_factory.mktemp('wiki')
    (folder / 'wiki.train.tokens').write_text(''.join(lines), encoding='utf-8')
    return str(folder)


@pytest.fixture(scope='module')
def dataset(corpus):
    return pretrain.load_corpus(corpus, 64, seed=3)


def write(tmp_path, text):
    path = tmp_path / 'wiki.tokens'
    path.write_text(text, encoding='utf-8')
    return str(path)


def test_paragraphs_equal_d2l_for_a_folder_and_a_file(corpus):
    random.seed(5)
    expected = d2l._read_wiki(corpus)
    random.seed(5)
    assert read_wiki(corpus) == expected
    random.seed(5)
    assert read_wiki(os.path.join(corpus, 'wiki.train.tokens')) == expected


def test_dataset_equals_d2l_array_for_array_under_the_same_seed(corpus):
    random.seed(11)
    ref = d2l._WikiTextDataset(d2l._read_wiki(corpus), 64)
    random.seed(11)
    ours = WikiTextDataset(read_wiki(corpus), 64)
    assert ours.vocab.idx_to_token == ref.vocab.idx_to_token
    assert len(ours) == len(ref) > 500
    for name in ARRAYS:
        expected = onp.stack([a.asnumpy() for a in getattr(ref, name)]).astype(onp.float32)
        assert (getattr(ours, name) == expected).all(), name


def test_vocabulary_min_freq_5_and_reserved_tokens(corpus, dataset):
    counts = collections.Counter(t for p in read_wiki(corpus, shuffle=False)
                                 for s in p for t in s.split())
    special = {'<pad>', '<mask>', '<cls>', '<sep>', '<unk>'}  # WikiText itself holds <unk>
    assert special <= set(dataset.vocab.idx_to_token)
    assert {t for t, c in counts.items() if c >= 5} - special == \
        set(dataset.vocab.idx_to_token) - special


def test_inputs_are_cls_a_sep_b_sep_within_max_len(dataset):
    v = dataset.vocab
    for row in range(len(dataset)):
        n = int(dataset.valid_lens[row])
        ids, seg = dataset.all_token_ids[row], dataset.all_segments[row]
        assert n <= 64 and ids[0] == v['<cls>'] and ids[n - 1] == v['<sep>']
        assert (ids[n:] == v['<pad>']).all() and (seg[n:] == 0).all()
        first_sep = int(onp.argmax(seg[:n]))  # segment 1 starts after the first <sep>
        assert ids[first_sep - 1] == v['<sep>'] and (seg[first_sep:n] == 1).all()


def test_mask_rates_and_nsp_balance(dataset):
    """15% of tokens predicted; of those 80% <mask>, 10% random, 10% kept; 50% real pairs."""
    v = dataset.vocab
    mask, kept, total, tokens = 0, 0, 0, 0
    for row in range(len(dataset)):
        n, k = int(dataset.valid_lens[row]), int(dataset.all_mlm_weights[row].sum())
        assert k == max(1, round(n * 0.15))
        pos = dataset.all_pred_positions[row, :k]
        assert (onp.diff(pos) > 0).all() and pos.min() > 0 and pos.max() < n
        inputs, labels = dataset.all_token_ids[row, pos], dataset.all_mlm_labels[row, :k]
        assert not onp.isin(labels, [v['<cls>'], v['<sep>']]).any()
        mask += int((inputs == v['<mask>']).sum())
        kept += int((inputs == labels).sum())
        total += k
        tokens += n
    assert 0.14 < total / tokens < 0.16
    assert 0.77 < mask / total < 0.83 and 0.08 < kept / total < 0.14  # kept includes random hits
    assert 0.45 < dataset.nsp_labels.mean() < 0.55


@pytest.mark.parametrize('text, message', [
    ('', 'empty'),
    (' = Title = \n no sentence break here \n', 'no paragraph'),
    (' one sentence only . \n', 'no paragraph'),
    (' a b . c d . \n', 'no token occurs 5 times'),
])
def test_bad_corpora_are_clear_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        WikiTextDataset(read_wiki(write(tmp_path, text)), 64)


def test_missing_corpus_and_small_max_len_and_no_pair_that_fits(tmp_path, corpus):
    with pytest.raises(DataError, match='no such file, nor a folder'):
        read_wiki(str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match='max_len=4: too small'):
        WikiTextDataset(read_wiki(corpus), 4)
    long_sentences = ' . '.join(['w ' * 30] * 5) + '\n'
    with pytest.raises(DataError, match='no sentence pair fits max_len=16'):
        WikiTextDataset(read_wiki(write(tmp_path, long_sentences)), 16)


def test_corpus_smaller_than_a_batch_is_an_error(tmp_path, corpus):
    with pytest.raises(ConfigError, match=r'--batch-size 4096: the corpus has \d+ sentence pairs, '
                                          'fewer than one batch'):
        pretrain.pretrain_bert(corpus, str(tmp_path / 'm.zip'), num_steps=1,
                               **dict(RUN, batch_size=4096))
    assert os.listdir(tmp_path) == []


def test_batches_resume_mid_epoch_and_trimming_changes_no_loss(dataset):
    it = PretrainIter(dataset, 100, seed=1)
    full = list(it.iter_from(2, 0))
    rest = list(it.iter_from(2, 3))
    assert len(full) == len(it) and all((a == b).all() for a, b in zip(full[3], rest[0]))
    batches = zip(*(PretrainIter(dataset, 4, shuffle=False, trim=trim) for trim in (True, False)))
    trimmed, padded = next((t, p) for t, p in batches if t[0].shape[1] < 64)
    assert padded[0].shape[1] == 64 and trimmed[0].shape[1] % 8 == 0
    config = dict(pretrain.PRESETS['bert.tiny'], vocab_size=len(dataset.vocab))
    net = pretrain.init_bert(config, [mx.cpu()], seed=0, dropout=0.0)
    loss = gluon.loss.SoftmaxCELoss()
    losses = [pretrain.batch_loss_bert(net, loss, len(dataset.vocab), [b])[2][0]
              for b in (trimmed, padded)]
    assert abs(float(losses[0]) - float(losses[1])) < 1e-4


@pytest.mark.slow
def test_held_out_text_with_a_given_vocabulary_and_its_loss(dataset):
    random.seed(0)
    held_out = WikiTextDataset(read_wiki(shared_file('wikitext-2', 'wiki.test.tokens'))[:200], 64,
                               dataset.vocab)
    assert held_out.vocab is dataset.vocab and held_out.all_token_ids.max() < len(dataset.vocab)
    config = dict(pretrain.PRESETS['bert.tiny'], vocab_size=len(dataset.vocab))
    devices = [mx.cpu(0), mx.cpu(1)]
    net = pretrain.init_bert(config, devices, seed=0)
    mlm, nsp = pretrain.evaluate_loss_bert(net, PretrainIter(held_out, 64, shuffle=False),
                                           len(dataset.vocab), devices)
    # an untrained model: near uniform over the vocabulary, no better than chance at NSP
    assert abs(mlm - onp.log(len(dataset.vocab))) < 1.0 and nsp > onp.log(2) - 0.05


@pytest.mark.slow
def test_pretrain_save_load_finetune_round_trip(tmp_path, corpus):
    out = str(tmp_path / 'bert_wiki.zip')
    bert, vocab, state = pretrain.pretrain_bert(corpus, out, num_steps=8, log_every=4, **RUN)
    h = state['history']
    assert h['step'] == [4, 8] and h['mlm'][1] < h['mlm'][0]
    assert os.path.isfile(str(tmp_path / 'bert_wiki.loss.png'))
    loaded, loaded_vocab = pretrained.load_pretrained_model(out, devices=[mx.cpu()])
    assert loaded_vocab.idx_to_token == vocab.idx_to_token
    for name, p in loaded._collect_params_with_prefix().items():
        assert (p.data() == bert._collect_params_with_prefix()[name].data()).all(), name
    # §16.7 on the loaded model: BERTClassifier over its encoder, fine-tuned on SNLI pairs
    pairs = tuple(column[:256] for column in read_snli(SAMPLE))
    data = BatchIter.from_dataset(SNLIBERTDataset(pairs, 64, loaded_vocab), 32, shuffle=True)
    net = BERTClassifier(loaded)
    net.output.initialize(ctx=[mx.cpu()])
    history = train(net, data, data, gluon.loss.SoftmaxCrossEntropyLoss(), make_trainer(net),
                    3, [mx.cpu()], log=lambda *a: None)
    assert history['train_loss'][-1] < history['train_loss'][0]


def params_of(net):
    return {n: p.data().asnumpy() for n, p in net._collect_params_with_prefix().items()}


def straddle_name_counters():
    """Move Gluon's global Dense counter just below a power of ten: the next model's parameter
    names then sort in another order than the last one's, as they can in another process."""
    n = int(gluon.nn.Dense(1).name[len('dense'):])
    for _ in range(10 ** len(str(n + 5)) - 5 - n):
        gluon.nn.Dense(1)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path, corpus):
    whole, _, whole_state = pretrain.pretrain_bert(corpus, str(tmp_path / 'a'), num_steps=6,
                                                   checkpoint_every=3, log_every=3, **RUN)
    part = str(tmp_path / 'b')
    pretrain.pretrain_bert(corpus, part, num_steps=3, log_every=3, **RUN)
    straddle_name_counters()
    resumed, _, state = pretrain.pretrain_bert(corpus, part, num_steps=6, resume=True,
                                               log_every=3, **RUN)
    assert state['history'] == whole_state['history']
    expected = params_of(whole)
    for name, value in params_of(resumed).items():
        assert onp.abs(value - expected[name]).max() < 1e-6, name


def test_resume_from_another_preset_or_corpus_is_a_clear_error(tmp_path, corpus):
    out = str(tmp_path / 'm')
    pretrain.pretrain_bert(corpus, out, num_steps=1, **RUN)
    with pytest.raises(PretrainedError, match="preset='bert.tiny' .now 'bert.small'"):
        pretrain.pretrain_bert(corpus, out, num_steps=2, resume=True, **dict(RUN, preset='bert.small'))
    with open(os.path.join(corpus, 'wiki.train.tokens'), encoding='utf-8') as f:
        other = write(tmp_path, ''.join(f.readlines()[:400]))
    with pytest.raises(PretrainedError, match=r"vocab_sha1='\w+' \(now '\w+'\)"):
        pretrain.pretrain_bert(other, out, num_steps=2, resume=True, **RUN)
    with pytest.raises(PretrainedError, match=r'written with .*max_len=64 \(now 32\)'):
        pretrain.pretrain_bert(corpus, out, num_steps=2, resume=True, **dict(RUN, max_len=32))


@pytest.mark.slow
def test_two_devices_keep_one_model(tmp_path, corpus):
    bert, _, state = pretrain.pretrain_bert(corpus, str(tmp_path / 'm'), num_steps=2,
                                            **dict(RUN, devices=[mx.cpu(0), mx.cpu(1)]))
    assert all(onp.isfinite(state['history'][k]).all() for k in ('mlm', 'nsp'))
    for p in bert.collect_params().values():
        assert (p.data(mx.cpu(0)) == p.data(mx.cpu(1))).all()


def test_cli_pretrain_writes_the_books_format_and_reports_bad_input(tmp_path, corpus, capsys):
    out = str(tmp_path / 'cli.zip')
    assert main(['pretrain', '--corpus', corpus, '--preset', 'bert.tiny', '--steps', '2',
                 '--batch-size', '16', '--devices', 'cpu', '--out', out]) == 0
    assert pretrained.load_pretrained_model(out, devices=[mx.cpu()])[0] is not None
    with open(str(tmp_path / 'cli.history.json'), encoding='utf-8') as f:
        assert json.load(f)['step'] == 2
    assert main(['pretrain', '--corpus', corpus, '--preset', 'bert.huge', '--out', out]) == 2
    assert "--preset 'bert.huge': unknown" in capsys.readouterr().err
    assert main(['pretrain', '--corpus', str(tmp_path / 'none'), '--out', out]) == 2
    assert 'no such file, nor a folder' in capsys.readouterr().err
