"""The kinds of model folder ``predict``, ``evaluate``, ``explain`` and ``export`` take, told
apart by their files, and the Hugging Face task folder loaded as a model of this package.

=========  ===============================================================================
``package``  ``config.json`` with ``task`` (or an older folder of this package): ``finetune``'s
``hf``       ``config.json`` with ``model_type``/``architectures`` and ``model.safetensors`` (or
             ``pytorch_model.bin``): a ``BertFor*`` model saved by transformers or by
             ``export --format hf``
``graph``    ``model-symbol.json``: an exported MXNet graph (``HybridBlock.export``)
=========  ===============================================================================
"""
import copy
import logging
import os

import mxnet as mx

from ..common import storage
from ..models import build, hf, hf_tasks, pretrained
from ..tasks.hf import task_from_hf

log = logging.getLogger(__name__)

GRAPH_FILE = 'model-symbol.json'
GRAPH_WEIGHTS = 'model-0000.params'


def folder_kind(path):
    """``'graph'``, ``'hf'`` or ``'package'`` (the default: its loader says what is missing)."""
    config = os.path.join(path, 'config.json')
    if any(os.path.lexists(os.path.join(path, name)) for name in (GRAPH_FILE, GRAPH_WEIGHTS)) or (
            os.path.isfile(config) and 'precision' in _object(config)):
        return 'graph'  # also with one of its files missing or odd: its loader names it
    if hf.is_hf_folder(path):
        stored = _object(os.path.join(path, 'config.json'))
        if 'task' not in stored and 'bert' not in stored:
            return 'hf'
    return 'package'


def _object(file):
    """The JSON object in ``file``, or ``{}`` when it is not one (its loader reports that)."""
    try:
        value = storage.read_json(file)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def load_hf_task(path, devices):
    """``(net, vocab, task)`` of a Hugging Face ``BertFor*`` folder (:mod:`~..models.hf_tasks`):
    the task of its ``config.json`` (:func:`~..tasks.hf.task_from_hf`), the encoder, pooler and
    task layer from its weights (each tensor's shape checked; tensors of no use are logged),
    its WordPiece tokenizer; hybridized, on ``devices``.

    Raises ``PretrainedError`` naming the file and the field or tensor.
    """
    from ..data.wordpiece import WordPiece
    config = hf.read_hf_config(path)
    where = os.path.join(path, 'config.json')
    stored = storage.read_json(where)
    task = task_from_hf(stored, where, config['max_len'])
    vocab = WordPiece.from_folder(path)
    build.check_vocab_fits(len(vocab), config['vocab_size'], path)
    net = task.head(build.build_bert(config, dropout=0.0, where=where))
    shapes = {name: tuple(p.shape) for name, p in net._collect_params_with_prefix().items()}
    params, unused = hf_tasks.read_hf_task(path, config, stored['architectures'][0], shapes)
    if unused:
        log.warning('%s: tensors not used: %s', path, ', '.join(unused[:8]))
    pretrained.load_param_dict(net, {k: mx.np.array(v) for k, v in params.items()}, path, devices)
    net.hybridize(static_alloc=True)
    return net, vocab, task


def model_config(path, net, task):
    """The ``config.json`` of the model folder ``path`` as :func:`~gluon_bertft.finetune.finetune`
    writes it (the task's fields and ``bert``, the architecture), whose ``net`` and ``task``
    were loaded: a package folder's own; for a Hugging Face task folder, its task's and its
    encoder's (so that an exported graph or INT8 folder of it reads as one of ours)."""
    if folder_kind(path) != 'hf':
        return storage.read_json(os.path.join(path, 'config.json'))
    return dict(copy.deepcopy(task.config), bert={k: v for k, v in net.encoder.hparams.items() if k != 'dropout'})
