"""Hugging Face BERT checkpoints (``model_type: bert``) loaded into :class:`~.model.BERTModel`.

A Hugging Face folder holds ``config.json`` (a ``BertConfig``) and ``model.safetensors`` (or
``pytorch_model.bin``) with the tensors of ``transformers``' ``modeling_bert``: ``BertModel``
or a ``BertFor*`` model around it (names prefixed ``bert.``). :func:`read_hf_config` turns the
config into this package's keys plus the architecture switches of :mod:`.model`
(GELU, LayerNorm after the embeddings, ``layer_norm_eps``...), :func:`map_hf_weights` renames
the tensors (torch ``Linear.weight`` is (out, in) like Gluon ``Dense.weight``: nothing is
transposed) and :func:`load_hf_model` does both. Neither torch nor transformers is needed for
``model.safetensors``. Where the folders come from (``hf:ID``, the MiniLM wheel): :mod:`.hub`.
"""
import json
import logging
import math
import os

import mxnet as mx
import numpy as onp

from ..common.errors import PretrainedError, shorten
from ..common.files import check_regular
from .build import build_bert

log = logging.getLogger(__name__)

WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')

# HF ``hidden_act`` -> our ``activation`` (HF ``activations.ACT2FN``: 'gelu' and 'gelu_python' are
# the erf form; 'gelu_new', 'gelu_pytorch_tanh' and 'gelu_fast' the tanh approximation)
HF_ACTIVATIONS = {'gelu': 'gelu', 'gelu_python': 'gelu', 'relu': 'relu', 'gelu_new': 'gelu_tanh',
                  'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_fast': 'gelu_tanh'}
# HF config key -> our key; each must be in config.json
HF_SIZES = {'vocab_size': 'vocab_size', 'hidden_size': 'num_hiddens',
            'intermediate_size': 'ffn_num_hiddens', 'num_attention_heads': 'num_heads',
            'num_hidden_layers': 'num_blks', 'max_position_embeddings': 'max_len'}
# HF module -> our block, outside and inside the encoder layers (modeling_bert's attribute paths)
HF_MODULES = {'embeddings.word_embeddings': 'encoder.token_embedding',
              'embeddings.token_type_embeddings': 'encoder.segment_embedding',
              'embeddings.LayerNorm': 'encoder.embedding_ln', 'pooler.dense': 'hidden',
              'cls.predictions.transform.dense': 'mlm.mlp.0',
              'cls.predictions.transform.LayerNorm': 'mlm.mlp.1',
              'cls.predictions.decoder': 'mlm.mlp.2', 'cls.seq_relationship': 'nsp.output'}
HF_LAYER_MODULES = {'attention.self.query': 'attention.W_q', 'attention.self.key': 'attention.W_k',
                    'attention.self.value': 'attention.W_v', 'attention.output.dense': 'attention.W_o',
                    'attention.output.LayerNorm': 'addnorm1.ln', 'intermediate.dense': 'ffn.dense1',
                    'output.dense': 'ffn.dense2', 'output.LayerNorm': 'addnorm2.ln'}
HF_BUFFERS = ('embeddings.position_ids',)  # not parameters: ignored without a word
PRETRAINING_HEADS = ('mlm.', 'nsp.')
OPTIONAL = PRETRAINING_HEADS + ('hidden.',)  # heads and pooler: kept freshly initialized when absent


def is_hf_folder(path):
    """Whether ``path`` is a folder with a Hugging Face ``config.json`` and weights.

    That is: ``model.safetensors`` or ``pytorch_model.bin``, and a ``config.json`` with
    ``model_type`` or ``architectures`` (or not valid JSON, for :func:`read_hf_config` to
    report). The book's folders (``config.json`` with our keys + ``pretrained.params``) are not.
    """
    config = os.path.join(path, 'config.json')
    if not (os.path.isfile(config)
            and any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES)):
        return False
    problem, stored = _load_config(config)
    if problem:
        return True
    return isinstance(stored, dict) and ('model_type' in stored or 'architectures' in stored)


def read_hf_config(path):
    """Our config dict from a Hugging Face ``config.json`` (a ``BertConfig``).

    Parameters
    ----------
    path : str
        the folder, or the ``config.json`` itself.

    Returns
    -------
    dict
        ``vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, max_len`` (from
        ``HF_SIZES``), the switches ``model.ARCH_KEYS`` (``embedding_norm=True``) and
        ``hf_dropout`` (``hidden_dropout_prob``). Absent optional keys take ``BertConfig``'s
        defaults (``hidden_act='gelu'``, ``layer_norm_eps=1e-12``, 2 token types, dropout 0.1).

    Raises
    ------
    PretrainedError
        not a JSON object; ``model_type``/``architectures`` not BERT; a size key missing or not
        a positive integer; ``hidden_act``, ``position_embedding_type`` or ``is_decoder`` that
        :class:`BERTModel` does not compute.
    """
    file = os.path.join(path, 'config.json') if os.path.isdir(path) else path
    check_regular(file, PretrainedError)
    problem, stored = _load_config(file)
    if problem:
        raise PretrainedError(f'{file} {problem}')
    if not isinstance(stored, dict):
        raise PretrainedError(f'{file}: not a JSON object')
    model_type, archs = stored.get('model_type'), stored.get('architectures') or []
    if model_type not in (None, 'bert') or any(not str(a).startswith('Bert') for a in archs) \
            or (model_type is None and not archs):
        raise PretrainedError(f'{file}: model_type {shorten(model_type)} (architectures {shorten(archs)}) is not '
                              f'supported: only model_type: bert (BertModel / BertFor* '
                              f'checkpoints) is')
    config = {}
    for hf_key, key in HF_SIZES.items():
        if hf_key not in stored:
            raise PretrainedError(f'{file}: key {hf_key!r} is missing')
        config[key] = value = stored[hf_key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PretrainedError(f'{file}: key {hf_key!r} must be a positive integer, not {shorten(value)}')
    if config['num_hiddens'] % config['num_heads']:
        raise PretrainedError(f'{file}: hidden_size is not a multiple of num_attention_heads')
    act = _check_supported(stored, file)
    config.update(activation=HF_ACTIVATIONS[act], embedding_norm=True,
                  layer_norm_eps=_field(stored, 'layer_norm_eps', 1e-12, file, 'a number > 0'),
                  type_vocab_size=_field(stored, 'type_vocab_size', 2, file, 'an integer >= 1'),
                  attention_dropout=_field(stored, 'attention_probs_dropout_prob', 0.1, file,
                                           'a number in [0, 1)'),
                  hf_dropout=_field(stored, 'hidden_dropout_prob', 0.1, file, 'a number in [0, 1)'))
    return config


def _check_supported(stored, file):
    """The config's ``hidden_act``; ``PretrainedError`` for what :class:`BERTModel` does not
    compute: another activation, relative positions, a decoder."""
    act = stored.get('hidden_act', 'gelu')
    if not isinstance(act, str) or act not in HF_ACTIVATIONS:
        raise PretrainedError(f'{file}: hidden_act {shorten(act)} is not supported (only '
                              f'{", ".join(HF_ACTIVATIONS)})')
    if stored.get('position_embedding_type', 'absolute') != 'absolute':
        raise PretrainedError(f'{file}: position_embedding_type '
                              f'{shorten(stored["position_embedding_type"])} is not supported (only absolute)')
    if stored.get('is_decoder') or stored.get('add_cross_attention'):
        raise PretrainedError(f'{file}: decoder BERTs (is_decoder, add_cross_attention) are not supported')
    return act


FIELD_RULES = {'a number > 0': lambda v: v > 0, 'an integer >= 1': lambda v: v >= 1,
               'a number in [0, 1)': lambda v: 0 <= v < 1}


def _field(stored, key, default, file, expected):
    """``stored[key]`` (``default`` if absent), or ``PretrainedError`` naming the file and the
    field unless it is a JSON number that is ``expected`` (integers where an integer is)."""
    value = stored.get(key, default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (isinstance(value, int) or 'integer' not in expected)
    if not (number and FIELD_RULES[expected](value)):
        raise PretrainedError(f'{file}: {key!r} is {shorten(value)}; expected {expected}')
    return value


def _load_config(file):
    """``(problem, value)`` of a ``config.json``: ``problem`` says why it cannot be read, else
    None (a UTF-8 byte-order mark is allowed)."""
    try:
        with open(file, encoding='utf-8-sig') as f:
            return None, json.load(f)
    except UnicodeDecodeError:
        return 'is not UTF-8 text (UTF-16? save it as UTF-8)', None
    except ValueError as e:
        return f'is empty or not valid JSON ({str(e)[:80]})', None
    except OSError as e:
        return f'cannot be read ({e.strerror})', None


def folder_problem(path):
    """What keeps ``path`` from being a Hugging Face model folder, or None if nothing does or
    nothing in it looks like one: ``(evidence, problem)`` for an error message."""
    names = [n for n in WEIGHT_FILES + ('tokenizer.json', 'vocab.txt', 'tokenizer_config.json')
             if os.path.isfile(os.path.join(path, n))]
    config = os.path.join(path, 'config.json')
    if not names:
        return None
    evidence = f'it has {", ".join(names)}'
    if not os.path.isfile(config):
        return evidence, 'config.json is missing'
    problem, stored = _load_config(config)
    if problem:
        return evidence, f'config.json {problem}'
    if not isinstance(stored, dict):
        return evidence, f'config.json is {json.dumps(stored)[:20]}, not a JSON object'
    if 'model_type' not in stored and 'architectures' not in stored:
        return evidence, 'config.json names no model_type (a BERT says "model_type": "bert")'
    if not any(os.path.isfile(os.path.join(path, n)) for n in WEIGHT_FILES):
        return evidence, 'it has no weights (model.safetensors or pytorch_model.bin)'
    return None


def read_hf_weights(path):
    """All tensors of a Hugging Face folder: ``{HF name: numpy array}``.

    Reads ``model.safetensors`` with ``safetensors.numpy`` (no bfloat16: numpy lacks it), else
    ``pytorch_model.bin`` with torch (``weights_only=True``), if torch is installed.

    Raises
    ------
    PretrainedError
        no weight file, an unreadable one, or ``pytorch_model.bin`` without torch.
    """
    single, binary = (os.path.join(path, name) for name in WEIGHT_FILES)
    if os.path.isfile(single):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            return check_finite(load_file(single), single)
        except (SafetensorError, OSError, TypeError) as e:  # TypeError: bfloat16 (not in numpy)
            raise PretrainedError(f'{single}: not a readable safetensors file ({e})') from None
    if not os.path.isfile(binary):
        raise PretrainedError(f'{path}: no model.safetensors or pytorch_model.bin')
    try:
        import torch
    except ImportError:
        raise PretrainedError(f'{binary}: pytorch_model.bin needs torch: pip install torch, or '
                              f'convert it to model.safetensors') from None
    try:
        state = torch.load(binary, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises many kinds on a bad file
        raise PretrainedError(f'{binary}: unreadable ({type(e).__name__}: {e})') from None
    return check_finite({k: (v.float() if v.is_floating_point() else v).numpy()
                         for k, v in state.items()}, binary)


def check_finite(weights, where):
    """``weights``, or ``PretrainedError`` naming each tensor with NaN or infinite values (a
    broken export; training from it would only say that it diverged)."""
    bad = [f'{name} ({int((~onp.isfinite(a)).sum())} of {a.size})' for name, a in weights.items()
           if a.dtype.kind == 'f' and not onp.isfinite(a).all()]
    if bad:
        raise PretrainedError(f'{where}: non-finite values (NaN or inf) in {len(bad)} tensor(s): '
                              f'{", ".join(bad[:5])}{", ..." if len(bad) > 5 else ""}')
    return weights


def hf_names(num_blks):
    """``{HF name without 'bert.': our parameter name}`` for a model of ``num_blks`` layers.

    LayerNorm parameters are mapped from both ``weight``/``bias`` and the ``gamma``/``beta``
    of older TF conversions; ``position_embeddings`` is our ``encoder.pos_embedding``, the
    decoder bias is ``cls.predictions.bias`` (or ``cls.predictions.decoder.bias``).
    """
    modules = dict(HF_MODULES)
    for i in range(num_blks):
        modules.update({f'encoder.layer.{i}.{hf}': f'encoder.blks.{i}.{ours}'
                        for hf, ours in HF_LAYER_MODULES.items()})
    names = {'embeddings.position_embeddings.weight': 'encoder.pos_embedding',
             'cls.predictions.bias': 'mlm.mlp.2.bias'}
    for hf, ours in modules.items():
        if hf.endswith('LayerNorm'):
            names.update({f'{hf}.weight': f'{ours}.gamma', f'{hf}.bias': f'{ours}.beta',
                          f'{hf}.gamma': f'{ours}.gamma', f'{hf}.beta': f'{ours}.beta'})
        else:
            names.update({f'{hf}.weight': f'{ours}.weight', f'{hf}.bias': f'{ours}.bias'})
    return names


def expected_shapes(config):
    """``{our parameter name: shape}`` of the :class:`BERTModel` that ``config`` describes."""
    return {name: tuple(p.shape) for name, p in build_hf_bert(config, 0.0)
            ._collect_params_with_prefix().items()}


def map_hf_weights(weights, config, shapes=None, source='checkpoint'):
    """Rename Hugging Face tensors to our parameters and check every shape.

    ``weights``: HF name (``bert.`` prefix optional) -> array, from :func:`read_hf_weights`;
    ``config``: from :func:`read_hf_config`; ``shapes``: our name -> shape (default: the model
    ``config`` describes); ``source``: named in the errors.

    Returns
    -------
    params : dict
        our name -> float32 numpy array; ``encoder.pos_embedding`` reshaped (P, H) -> (1, P, H).
        Without ``cls.predictions.decoder.weight`` but with other ``cls.predictions`` tensors,
        ``mlm.mlp.2.weight`` is a copy of the word embeddings (HF ties them).
    report : dict
        ``unused``: HF names neither used nor known (e.g. ``classifier.*``, extra layers);
        ``missing``: our names of the pooler and MLM/NSP heads absent from the file;
        ``tied_decoder``: whether the MLM decoder weight came from the word embeddings.

    Raises
    ------
    PretrainedError
        a tensor whose shape differs from the model's (naming both), or an encoder tensor
        missing from the file.
    """
    shapes = expected_shapes(config) if shapes is None else shapes
    names = hf_names(config['num_blks'])
    weights = {(k[len('bert.'):] if k.startswith('bert.') else k): (k, v) for k, v in weights.items()}
    if 'cls.predictions.bias' in weights:  # newer files store the decoder bias twice
        weights.pop('cls.predictions.decoder.bias', None)
    params, unused = {}, []
    for short, (original, array) in weights.items():
        name = names.get(short)
        if name is None or name not in shapes:
            if short not in HF_BUFFERS:
                unused.append(original)
            continue
        want = shapes[name]
        if name == 'encoder.pos_embedding':  # (P, H) -> (1, P, H), our batch axis
            want = want[1:]
        if tuple(array.shape) != want:
            raise PretrainedError(f'{source}: tensor {original} has shape {tuple(array.shape)} in '
                                  f'the file, the model expects {want} (for {name})')
        params[name] = onp.asarray(array, dtype='float32').reshape(shapes[name])
    tied = ('mlm.mlp.2.weight' in shapes and 'mlm.mlp.2.weight' not in params
            and any(k.startswith('cls.predictions.') for k in weights))
    if tied:
        params['mlm.mlp.2.weight'] = params['encoder.token_embedding.weight'].copy()
    absent = sorted(set(shapes) - set(params))
    required = [n for n in absent if not n.startswith(OPTIONAL)]
    if required:
        ours_to_hf = {ours: hf for hf, ours in reversed(list(names.items()))}  # first HF name
        listed = ', '.join(f'{ours_to_hf.get(n, n)} (our {n})' for n in required[:5])
        raise PretrainedError(f'{source}: {len(required)} encoder tensors are missing: {listed}'
                              f'{", ..." if len(required) > 5 else ""}')
    return params, dict(unused=sorted(unused), missing=absent, tied_decoder=tied)


def describe_report(report, shapes=None, weights=None):
    """Log lines for a :func:`map_hf_weights` report: ``unused: ...``, ``not in the checkpoint: ...``.

    Names whose first component is wholly listed are grouped (``mlm.*``) when ``shapes``
    (our names) or ``weights`` (the file's names) tell what "wholly" is.
    """
    lines = []
    if report['unused']:
        lines.append('unused: ' + _group(report['unused'], weights or report['unused']))
    if report['missing']:
        lines.append('not in the checkpoint (freshly initialized): '
                     + _group(report['missing'], shapes or report['missing']))
    return lines


def _group(names, universe, limit=8):
    top = lambda name: name.split('.')[0]
    out = []
    for name in sorted(names):  # 'mlm.*' when every name under 'mlm.' is listed
        under = {n for n in universe if top(n) == top(name)}
        entry = f'{top(name)}.*' if len(under) > 1 and under <= set(names) else name
        if entry not in out:
            out.append(entry)
    more = f' ... ({len(out) - limit} more)' if len(out) > limit else ''
    return ', '.join(out[:limit]) + more


def build_hf_bert(config, dropout=None):
    """A :class:`BERTModel` (uninitialized) from a :func:`read_hf_config` dict.

    ``dropout=None`` keeps the checkpoint's rates (``hf_dropout`` and ``attention_dropout``);
    a number sets both.
    """
    if dropout is not None:
        config = dict(config, attention_dropout=dropout)
    return build_bert(config, config.get('hf_dropout', 0.1) if dropout is None else dropout)


def load_hf_model(path, dropout=None, devices=None):
    """Load a Hugging Face BERT folder into a :class:`BERTModel`.

    ``path``: folder with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``);
    ``dropout``: hidden and attention dropout rate, ``None``: the checkpoint's
    (``hidden_dropout_prob``, ``attention_probs_dropout_prob``); ``devices``: list of
    ``mx.Context`` to hold the parameters, default ``[mx.cpu()]``.

    Returns
    -------
    (bert, config, report)
        the model with the file's tensors (the pooler/MLM/NSP tensors the file lacks are
        initialized as HF does: Normal(0.02) weights, zero biases, LayerNorm 1/0), the config
        of :func:`read_hf_config` and the report of :func:`map_hf_weights` (also logged).

    Raises ``PretrainedError`` (from the three functions it calls).
    """
    config = read_hf_config(path)
    weights = read_hf_weights(path)
    bert = build_hf_bert(config, dropout)
    params = bert._collect_params_with_prefix()
    shapes = {name: tuple(p.shape) for name, p in params.items()}
    loaded, report = map_hf_weights(weights, config, shapes, source=path)
    devices = devices or [mx.cpu()]
    for name, param in params.items():
        if name in loaded:  # the call load_parameters makes, from an in-memory array
            param._load_init(mx.np.array(loaded[name], dtype='float32'), devices)
        else:
            param.initialize(default_init=mx.init.Normal(0.02), ctx=devices)
    heads = [n for n in report['missing'] if n.startswith(PRETRAINING_HEADS)]
    if heads:  # expected of a fine-tuning checkpoint or a sentence encoder
        log.info('%s has no pretraining heads (masked LM, next sentence); fine-tuning does not '
                 'use them, so they are left untrained', path)
    rest = dict(report, missing=[n for n in report['missing'] if n not in heads])
    for line in describe_report(rest, shapes, list(weights)):
        log.warning('%s: %s', path, line)
    return bert, config, report
