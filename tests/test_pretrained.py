"""Pretrained BERT in the book's format: save, load (zip, folder), checks, downloads."""
import hashlib
import http.server
import json
import os
import threading
import time
import zipfile

import mxnet as mx
import pytest
from conftest import TINY, tiny_bert
from d2l import mxnet as d2l
from mxnet import np

from gluon_bertft.common.errors import PretrainedError
from gluon_bertft.models import pretrained
from gluon_bertft.models.pretrained import load_pretrained_model, save_pretrained

VOCAB_TOKENS = ['<cls>', '<mask>', '<pad>', '<sep>', '<unk>'] + [f'w{i}' for i in range(45)]
CONFIG = dict(TINY, vocab_size=len(VOCAB_TOKENS))


def example():
    tokens = np.array([[0, 7, 9, 3, 11, 3, 2]], dtype='int32')
    return tokens, np.array([[0, 0, 0, 0, 1, 1, 0]], dtype='int32'), np.array([6.0])


@pytest.fixture
def saved(tmp_path):
    bert = tiny_bert(len(VOCAB_TOKENS), seed=7)
    vocab = pretrained.vocab_from_tokens(VOCAB_TOKENS)
    expected = bert.encoder(*example())
    return bert, vocab, expected, tmp_path


def book_zip(path, bert, name='bert.tiny'):
    """A zip laid out like the book's bert.small.zip: name/vocab.json, name/pretrained.params."""
    params = str(path) + '.params'
    bert.save_parameters(params)
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr(f'{name}/vocab.json', json.dumps(VOCAB_TOKENS))
        zf.write(params, f'{name}/pretrained.params')
    return str(path)


@pytest.mark.parametrize('name', ['model_dir', 'model.zip'])
def test_save_then_load_gives_the_same_model(saved, name):
    bert, vocab, expected, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / name), CONFIG)
    loaded, loaded_vocab = load_pretrained_model(path, dropout=0.0, devices=[mx.cpu()])
    assert loaded_vocab.idx_to_token == VOCAB_TOKENS
    assert loaded_vocab['w3'] == 8 and loaded_vocab['never-seen'] == loaded_vocab['<unk>']
    assert float(np.abs(loaded.encoder(*example()) - expected).max()) == 0


def test_saved_directory_is_the_books_format(saved):
    """d2l's own loading code (the book's load_pretrained_model body) reads what we write."""
    bert, vocab, expected, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / 'bert.tiny'), CONFIG)
    tokens = json.load(open(os.path.join(path, 'vocab.json')))
    ref = d2l.BERTModel(len(tokens), 32, 64, 2, 2, 0.0, 64)
    ref.load_parameters(os.path.join(path, 'pretrained.params'), ctx=[mx.cpu()])
    assert float(np.abs(ref.encoder(*example()) - expected).max()) < 1e-5


def test_book_zip_without_config_loads_with_preset_and_num_heads(saved):
    bert, _, expected, tmp = saved
    path = book_zip(tmp / 'bert.tiny.zip', bert)
    with pytest.raises(PretrainedError, match='give num_heads'):
        load_pretrained_model(path)
    loaded, _ = load_pretrained_model(path, num_heads=2, dropout=0.0, devices=[mx.cpu()])
    assert float(np.abs(loaded.encoder(*example()) - expected).max()) == 0


def test_loads_onto_several_devices(saved):
    bert, vocab, _, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / 'm'), CONFIG)
    loaded, _ = load_pretrained_model(path, devices=[mx.cpu(0), mx.cpu(1)])
    for param in loaded.collect_params().values():
        assert param.list_ctx() == [mx.cpu(0), mx.cpu(1)]


def test_preset_that_does_not_fit_is_an_error(saved):
    bert, vocab, _, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / 'm'), CONFIG)
    with pytest.raises(PretrainedError, match=r'bert.base\) has num_hiddens=768 but pretrained.params has num_hiddens=32'):
        load_pretrained_model(path, preset='bert.base')
    with pytest.raises(PretrainedError, match='num_blks=3 but pretrained.params has num_blks=2'):
        load_pretrained_model(path, num_blks=3)


def test_vocab_params_mismatch_is_an_error(saved):
    bert, vocab, _, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / 'm'), CONFIG)
    with open(os.path.join(path, 'vocab.json'), 'w') as f:
        json.dump(VOCAB_TOKENS[:-1], f)
    with pytest.raises(PretrainedError, match='vocab.json has 49 tokens but pretrained.params embeds 50'):
        load_pretrained_model(path)


def test_corrupt_zip_and_incomplete_dir_are_errors(saved):
    bert, vocab, _, tmp = saved
    path = save_pretrained(bert, vocab, str(tmp / 'm.zip'), CONFIG)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(PretrainedError, match='m.zip: corrupt or unreadable zip'):
        load_pretrained_model(path)
    os.makedirs(tmp / 'empty')
    with pytest.raises(PretrainedError, match='empty: directory has no vocab.json'):
        load_pretrained_model(str(tmp / 'empty'))
    with pytest.raises(PretrainedError, match="'nowhere': no such file"):
        load_pretrained_model('nowhere')


def test_params_that_are_not_bert_are_an_error(tmp_path):
    os.makedirs(tmp_path / 'm')
    (tmp_path / 'm' / 'vocab.json').write_text('["<unk>", "<pad>", "<cls>", "<sep>"]')
    mx.npx.save(str(tmp_path / 'm' / 'pretrained.params'), {'foo.weight': np.zeros((2, 2))})
    with pytest.raises(PretrainedError, match='not a d2l BERT parameter file'):
        load_pretrained_model(str(tmp_path / 'm'))


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/www that counts its requests."""
    root = tmp_path / 'www'
    os.makedirs(root)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_port}/', root, hits
    httpd.shutdown()


def test_download_checks_sha1_and_caches(server, tmp_path, monkeypatch):
    url, root, hits = server
    (root / 'm.zip').write_bytes(b'model bytes')
    good = hashlib.sha1(b'model bytes').hexdigest()
    monkeypatch.setenv(pretrained.DATA_DIR_ENV, str(tmp_path / 'cache'))
    monkeypatch.setitem(d2l.DATA_HUB, 'good', (url + 'm.zip', good))
    monkeypatch.setitem(d2l.DATA_HUB, 'bad', (url + 'm.zip', '0' * 40))
    with pytest.raises(PretrainedError, match='SHA-1 .* does not match'):
        pretrained.download('bad')
    assert not os.path.exists(tmp_path / 'cache' / 'm.zip')
    assert os.listdir(tmp_path / 'cache') == []
    path = pretrained.download('good')
    assert path == str(tmp_path / 'cache' / 'm.zip') and open(path, 'rb').read() == b'model bytes'
    pretrained.download('good')
    assert hits == ['/m.zip', '/m.zip']  # the second good call was served from the cache


def test_offline_hub_download_fails_fast_naming_url(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.DATA_DIR_ENV, str(tmp_path))
    url = 'http://bert-small.invalid/bert.small.zip'
    monkeypatch.setitem(d2l.DATA_HUB, 'bert.small', (url, 'a4e718a47137ccd1809c9107ab4f5edd317bae2c'))
    start = time.time()
    with pytest.raises(PretrainedError) as err:
        load_pretrained_model('bert.small')
    assert time.time() - start < 10
    assert url in str(err.value) and str(tmp_path / 'bert.small.zip') in str(err.value)
    assert 'vocab.json and pretrained.params' in str(err.value)


def test_hub_entries_are_the_books():
    assert d2l.DATA_HUB['bert.small'] == (d2l.DATA_URL + 'bert.small.zip',
                                          'a4e718a47137ccd1809c9107ab4f5edd317bae2c')
    assert d2l.DATA_HUB['bert.base'] == (d2l.DATA_URL + 'bert.base.zip',
                                         '7b3820b35da691042e5d34c0971ac3edbd80d3f4')
    assert pretrained.PRESETS['bert.small'] == dict(num_hiddens=256, ffn_num_hiddens=512,
                                                    num_heads=4, num_blks=2, max_len=512)
    assert pretrained.PRESETS['bert.base'] == dict(num_hiddens=768, ffn_num_hiddens=3072,
                                                   num_heads=12, num_blks=12, max_len=512)
    # the book's §15.10 model, for pretraining and random initialization
    assert pretrained.ALL_PRESETS == dict(pretrained.PRESETS, **{'bert.tiny': dict(
        num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_blks=2, max_len=1000)})
