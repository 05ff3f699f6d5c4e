"""Hugging Face task models (``BertFor*``) and this package's heads: one name table, both ways.

``transformers``' ``modeling_bert`` puts a task layer on ``bert`` (a ``BertModel``):
``BertForSequenceClassification`` a ``classifier`` Linear on the pooler's output (our
``BERTClassifier``/``BERTRegressor``: ``hidden`` is the pooler, ``output`` the classifier),
``BertForTokenClassification`` a ``classifier`` on every token (``BERTTagger``, no pooler:
``add_pooling_layer=False``), ``BertForQuestionAnswering`` ``qa_outputs`` with two outputs,
start and end (``BERTSpanQA``'s ``output.dense``, no pooler). Dropout before the layer is
identity at inference, as ours.

:func:`task_names` is the one table of tensor names (:func:`~.hf.hf_names` for the encoder
plus :data:`HF_HEADS`); :func:`read_hf_task` reads a folder through it, :func:`write_hf_task`
writes one through it (``config.json`` and ``model.safetensors`` as ``save_pretrained`` writes
them). Neither needs torch or transformers.
"""
import json
import os

import numpy as onp

from ..common.errors import PretrainedError
from . import hf

# HF architecture -> (uses the pooler, {HF task module: our head module})
HF_HEADS = {'BertForSequenceClassification': (True, {'classifier': 'output'}),
            'BertForTokenClassification': (False, {'classifier': 'output'}),
            'BertForQuestionAnswering': (False, {'qa_outputs': 'output.dense'})}
POOLER = 'hidden.'  # our name of HF's bert.pooler.dense
ENCODER = 'encoder.'
# BertConfig's keys that are not read off the model: save_pretrained's values (transformers
# 4.57: ``dtype``, which older versions called ``torch_dtype``; float32 is the default of both)
HF_CONSTANTS = dict(model_type='bert', initializer_range=0.02, position_embedding_type='absolute',
                    use_cache=True, classifier_dropout=None, dtype='float32')


def task_names(num_blks, architecture):
    """``{HF tensor name: our parameter name}`` of a ``BertFor*`` model of ``num_blks`` layers
    (our names are those of the head's ``_collect_params_with_prefix``; the HF names carry
    ``bert.``). Where :func:`~.hf.hf_names` gives several HF names for one tensor (older
    conversions' LayerNorm ``gamma``/``beta``), the first (``weight``/``bias``) comes first."""
    pooler, head = HF_HEADS[architecture]
    names = {f'bert.{name}': ours for name, ours in hf.hf_names(num_blks).items()
             if ours.startswith(ENCODER) or (pooler and ours.startswith(POOLER))}
    for theirs, ours in head.items():
        names.update({f'{theirs}.weight': f'{ours}.weight', f'{theirs}.bias': f'{ours}.bias'})
    return names


def export_names(num_blks, architecture, ours=None):
    """``{our parameter name: HF tensor name}``: :func:`task_names` inverted (the first HF
    name of each), for the names in ``ours`` (a model's parameters) if given."""
    inverse = {}
    for theirs, name in task_names(num_blks, architecture).items():
        if ours is None or name in ours:
            inverse.setdefault(name, theirs)
    return inverse


def num_outputs(params, architecture):
    """Outputs per example (per token) of the task layer of ``architecture`` in ``params``
    (our name -> array): HF's ``num_labels``."""
    ours = next(iter(HF_HEADS[architecture][1].values()))
    return int(params[f'{ours}.bias'].shape[0])


def hf_config(bert, hidden_dropout, fields, pad_token_id):
    """The ``config.json`` of a ``BertFor*`` model (``BertConfig.to_dict`` keys).

    ``bert``: the encoder's hyperparameters (:attr:`BERTEncoder.hparams`); ``hidden_dropout``:
    ``hidden_dropout_prob`` (the fine-tuning run's dropout); ``fields``: the task's
    (``architectures``, ``id2label``, ``label2id``, ``problem_type``, ...);
    ``pad_token_id``: the tokenizer's. Our keys are :data:`~.hf.HF_SIZES` inverted, the
    activation the first HF name of :data:`~.hf.HF_ACTIVATIONS` for ours.
    """
    config = {theirs: bert[ours] for theirs, ours in hf.HF_SIZES.items()}
    activation = next(theirs for theirs, ours in hf.HF_ACTIVATIONS.items()
                      if ours == bert['activation'])
    attention = bert['attention_dropout']
    config.update(HF_CONSTANTS, hidden_act=activation, layer_norm_eps=bert['layer_norm_eps'],
                  type_vocab_size=bert['type_vocab_size'], hidden_dropout_prob=hidden_dropout,
                  attention_probs_dropout_prob=hidden_dropout if attention is None else attention,
                  pad_token_id=pad_token_id, **fields)
    return dict(sorted(config.items()))


def write_hf_task(folder, params, bert, hidden_dropout, fields, pad_token_id):
    """Write ``config.json`` and ``model.safetensors`` of a ``BertFor*`` model into ``folder``.

    ``params``: our parameter name -> float32 numpy array (the head's
    ``_collect_params_with_prefix``); ``fields['architectures'][0]`` picks the table; the other
    arguments: :func:`hf_config`. ``encoder.pos_embedding`` (1, P, H) is written (P, H).
    Returns ``{HF name: array}`` as written. ``PretrainedError`` if a parameter has no HF name
    (a head this table does not describe).
    """
    from safetensors.numpy import save_file
    names = export_names(bert['num_blks'], fields['architectures'][0], params)
    extra = sorted(set(params) - set(names))
    if extra:
        raise PretrainedError(f'{fields["architectures"][0]}: no tensor of it holds the '
                              f'parameters {", ".join(extra)[:200]}')
    tensors = {names[ours]: onp.ascontiguousarray(
        array.reshape(array.shape[1:]) if ours == 'encoder.pos_embedding' else array,
        dtype=onp.float32) for ours, array in sorted(params.items())}
    file = os.path.join(folder, 'model.safetensors')
    save_file(tensors, file, metadata={'format': 'pt'})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(file, 0o666 & ~umask)  # safetensors creates it private (0600); the others are not
    with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(hf_config(bert, hidden_dropout, fields, pad_token_id), f, indent=2,
                  ensure_ascii=False)
        f.write('\n')
    return tensors


def read_hf_task(path, config, architecture, head_shapes):
    """Our parameters of the ``BertFor*`` model in the Hugging Face folder ``path``.

    ``config``: :func:`~.hf.read_hf_config` of it; ``architecture``: one of :data:`HF_HEADS`;
    ``head_shapes``: our name -> shape of every parameter of the head to fill (encoder
    included). The encoder goes through :func:`~.hf.map_hf_weights` (shapes checked, the
    ``bert.`` prefix optional); the task layer's tensors by :func:`task_names`.

    Returns ``(params, unused)``: our name -> float32 array, and the file's tensors not used.
    Raises ``PretrainedError`` naming the tensor for one that is missing or of another shape.
    """
    weights = hf.read_hf_weights(path)
    encoder, report = hf.map_hf_weights(weights, config, source=path)
    names = task_names(config['num_blks'], architecture)
    params = {k: v for k, v in encoder.items() if k in head_shapes}
    head = {theirs: ours for theirs, ours in names.items() if not theirs.startswith('bert.')}
    for theirs, ours in head.items():
        if theirs not in weights:
            raise PretrainedError(f'{path}: {architecture} tensor {theirs} is missing from the weights')
        if tuple(weights[theirs].shape) != tuple(head_shapes[ours]):
            raise PretrainedError(f'{path}: tensor {theirs} has shape {tuple(weights[theirs].shape)}; '
                                  f'config.json makes it {tuple(head_shapes[ours])}')
        params[ours] = onp.asarray(weights[theirs], dtype='float32')
    absent = sorted(set(head_shapes) - set(params))
    if absent:
        ours_to_hf = export_names(config['num_blks'], architecture, absent)
        raise PretrainedError(f'{path}: {architecture} tensors missing: '
                              f'{", ".join(ours_to_hf.get(n, n) for n in absent[:5])}')
    unused = [n for n in report['unused'] if n not in head]
    return params, unused
