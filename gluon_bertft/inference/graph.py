"""The exported-graph model folder: a trained network in MXNet's deployment format.

One layout for ``export --format mxnet`` (fp32) and ``quantize`` (INT8), defined here once:

``config.json``
    the source model's ``config.json`` (architecture, task, labels, reader, lengths) plus
    ``"format": "mxnet-graph"``, ``"precision"`` (``fp32`` or ``int8``), ``"inputs"`` (the
    graph's input names), and for INT8 ``"fp32_layers"`` (the layers kept in fp32) and
    ``"quantization"`` (calibration and fidelity figures).
the vocabulary
    ``vocab.json``, or a WordPiece tokenizer's ``tokenizer.json``, ``tokenizer_config.json``
    and ``vocab.txt``, as the source model folder has them.
``model-symbol.json`` + ``model-0000.params``
    the graph and its weights as ``HybridBlock.export`` writes them (``arg:``/``aux:`` keys);
    ``mx.gluon.SymbolBlock.imports(symbol, ['data0', 'data1', 'data2'], params)`` runs it
    without this package: inputs ``tokens``, ``segments`` (batch, seq) int32 and
    ``valid_lens`` (batch,) float32; outputs the head's (``docs/speed.md``).
``model.params`` (INT8 only)
    the fp32 weights, which ``explain`` uses (gradients cannot pass through a loaded graph).

Folders are told apart by their files: the package's (``config.json`` with ``task``, no
``model-symbol.json``), an exported graph (``model-symbol.json``).
"""
import json
import os
import shutil
import tempfile
import warnings

import mxnet as mx
from mxnet import np
from mxnet.gluon import nn

from ..common import storage
from ..common.files import check_regular
from ..common.errors import shorten
from ..common.errors import ConfigError, PretrainedError
from ..common.outputs import replace_folder
from .fast import BACKEND, switch
from .folders import GRAPH_FILE, GRAPH_WEIGHTS, folder_kind

FORMAT = 'mxnet-graph'
SYMBOL = GRAPH_FILE  # what makes a folder a graph folder (inference/folders.py)
WEIGHTS = GRAPH_WEIGHTS
INPUTS = ('data0', 'data1', 'data2')  # tokens, segments, valid_lens: HybridBlock.export's names
VOCAB_FILES = ('vocab.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt')
PRECISIONS = ('fp32', 'int8')


def files(precision):
    """The entries of a graph folder of ``precision`` (what ``--out`` may hold)."""
    extra = (storage.PARAMS,) if precision != 'fp32' else ()
    return ('config.json', SYMBOL, WEIGHTS) + VOCAB_FILES + extra


def is_graph_folder(path):
    """Whether ``path`` is an exported-graph folder (:func:`~.folders.folder_kind`)."""
    return os.path.isdir(path) and folder_kind(path) == 'graph'


class GraphHead(nn.HybridBlock):
    """A head of :mod:`gluon_bertft.models.heads` (an ``nn.Block`` taking one tuple) as a
    ``HybridBlock`` of three inputs, for ``export``: the head's own layers (shared, not
    copied) and its own ``forward``. ``(tokens, segments, valid_lens)`` -> the head's outputs."""

    def __init__(self, head):
        super().__init__()
        self._head_forward = type(head).forward
        for name, child in head._children.items():
            setattr(self, name, child)

    def hybrid_forward(self, F, tokens, segments, valid_lens):
        return self._head_forward(self, (tokens, segments, valid_lens))


def export_symbol(head):
    """``(symbol, arg_params, aux_params)`` of ``head`` (hybridizable layers; use an inference
    copy) as ``HybridBlock.export`` writes them and MXNet reads them back, after one call on a
    two-token example (export needs a traced graph)."""
    net = GraphHead(head)
    net.hybridize(static_alloc=True)
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    example = (np.zeros((1, 2), dtype='int32', ctx=device),
               np.zeros((1, 2), dtype='int32', ctx=device), np.array([2.0], ctx=device))
    net(*example)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, 'model')
        net.export(prefix, 0)
        return mx.model.load_checkpoint(prefix, 0)


def save_symbol(folder, symbol, arg_params, aux_params):
    """Write ``symbol`` and its parameters into ``folder`` in ``HybridBlock.export``'s format
    (:data:`SYMBOL`, :data:`WEIGHTS`), the parameters in MXNet's legacy shape semantics: a
    plain ``SymbolBlock.imports`` reads them (one written in numpy-shape semantics, as
    ``export`` from numpy-mode blocks writes, needs ``npx.set_np()`` first)."""
    symbol.save(os.path.join(folder, SYMBOL))
    saved = {f'arg:{k}': v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    saved.update({f'aux:{k}': v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    with mx.util.np_array(False), mx.util.np_shape(False):
        mx.nd.save(os.path.join(folder, WEIGHTS), {k: v.as_nd_ndarray() for k, v in saved.items()})


def fill_graph_folder(folder, source, config, write_graph, keep_fp32=False):
    """Fill the new, empty graph folder ``folder`` from the model folder ``source`` (its
    ``config.json`` read as ``config``). ``write_graph(folder)`` writes :data:`SYMBOL` and
    :data:`WEIGHTS` and returns the fields to add to ``config.json`` (``precision`` at least).
    ``keep_fp32``: copy ``source``'s ``model.params`` too (for ``explain``)."""
    extra = write_graph(folder)
    for name in VOCAB_FILES + ((storage.PARAMS,) if keep_fp32 else ()):
        if os.path.isfile(os.path.join(source, name)):
            shutil.copyfile(os.path.join(source, name), os.path.join(folder, name))
    with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(config, format=FORMAT, inputs=list(INPUTS), **extra), f, indent=1)


def write_graph_folder(out, source, config, write_graph, keep_fp32=False):
    """:func:`fill_graph_folder` into ``out``, atomically: the whole folder appears at once or
    not at all (``out`` replaced as a whole,
    :func:`~gluon_bertft.common.outputs.replace_folder`)."""
    with replace_folder(out) as tmp:
        fill_graph_folder(tmp, source, config, write_graph, keep_fp32)
    return out


def check_source(path, option):
    """Refuse a graph folder where a trainable model folder is needed (``quantize``,
    ``export``): its weights are a loaded graph's, not the model's."""
    if os.path.isdir(path) and is_graph_folder(path):
        precision = read_graph_config(path).get('precision')
        raise ConfigError(f'{option} {path}: an exported graph ({precision}), not a model folder; '
                          'give the fp32 model folder it was made from')


def read_graph_config(path):
    """The ``config.json`` of a graph folder, with its ``precision`` checked."""
    where = os.path.join(path, 'config.json')
    config = storage.read_json(where)
    if not isinstance(config, dict) or config.get('precision') not in PRECISIONS:
        raise PretrainedError(f'{where}: "precision" must be one of {", ".join(PRECISIONS)} '
                              '(an exported graph folder)')
    return config


class GraphNet(nn.Block):
    """A loaded graph folder called as the package's heads are: ``((tokens, segments,
    valid_lens))`` -> the head's outputs. ``type_vocab_size`` and ``precision`` from its
    ``config.json``."""

    def __init__(self, block, config):
        super().__init__()
        self.graph = block
        self.precision = config['precision']
        self.type_vocab_size = config['bert'].get('type_vocab_size', 2)

    def forward(self, inputs):
        return self.graph(*inputs)


def load_graph(path, devices):
    """``(net, config)`` of the graph folder ``path`` on ``devices``: a :class:`GraphNet` over
    ``mx.gluon.SymbolBlock.imports``. An fp32 graph is partitioned for oneDNN at its first
    call (switch ``GLUON_BERTFT_ONEDNN``); an INT8 graph is oneDNN's already and runs on CPUs
    only (``ConfigError`` for other devices)."""
    config = read_graph_config(path)
    cpu = all(d.device_type == 'cpu' for d in devices)
    if config['precision'] != 'fp32' and not cpu:
        raise ConfigError(f'--devices: {path} is an INT8 graph, which runs on CPUs only '
                          "(MXNet's oneDNN operators); give --devices cpu")
    block, saved, outputs = _read_graph(path, devices)
    labels = config.get('labels')
    if isinstance(labels, list) and len(outputs) == 1 and outputs[0] and \
            outputs[0][-1] != len(labels):
        raise PretrainedError(f'{os.path.join(path, "config.json")}: "labels" has {len(labels)} '
                              f'classes but the graph has {outputs[0][-1]} outputs')
    weights = os.path.join(path, WEIGHTS)
    for name, param in block.collect_params().items():
        value = saved.get(f'arg:{name}', saved.get(f'aux:{name}'))
        if value is None:
            raise PretrainedError(f'{weights}: no value for {name}')
        try:
            param._load_init(value.as_np_ndarray() if mx.util.is_np_array() else value, devices,
                             cast_dtype=True, dtype_source='saved')
        except (AssertionError, ValueError, mx.MXNetError):
            raise PretrainedError(f'{weights}: {name} has shape {value.shape}, which does not '
                                  f'fit {SYMBOL} (files of two different exports?)') from None
    if config['precision'] == 'fp32' and cpu and switch('onednn'):
        block.hybridize(True, backend=BACKEND, static_alloc=True, static_shape=True)
    else:
        block.hybridize(static_alloc=True, static_shape=True)
    return GraphNet(block, config), config


def _read_graph(path, devices):
    """``(SymbolBlock, saved arrays)`` of the folder's two graph files; ``PretrainedError``
    naming the file that is missing, not a regular file, or not MXNet's (checked before MXNet
    reads it: its own errors are tracebacks without the path)."""
    symbol, weights = os.path.join(path, SYMBOL), os.path.join(path, WEIGHTS)
    for where in (symbol, weights):
        check_regular(where, PretrainedError)
        if not os.path.isfile(where):
            raise PretrainedError(f'{path}: an exported graph folder without {os.path.basename(where)}'
                                  ' (export --format mxnet or quantize writes it)')
    graph = storage.read_json(symbol)
    if not isinstance(graph, dict) or not all(isinstance(graph.get(k), list)
                                              for k in ('nodes', 'arg_nodes', 'heads')):
        raise PretrainedError(f'{symbol}: not an MXNet symbol file (an object with "nodes", '
                              '"arg_nodes" and "heads")')
    try:
        with warnings.catch_warnings():  # "Cannot decide type for data0": given at each call
            warnings.simplefilter('ignore', UserWarning)
            block = mx.gluon.SymbolBlock.imports(symbol, list(INPUTS), ctx=devices)
    except (mx.MXNetError, ValueError, KeyError, AssertionError) as e:
        raise PretrainedError(f'{symbol}: not a graph MXNet can load '
                              f'({shorten(_mxnet_cause(e), 160)})') from None
    try:
        with mx.util.np_array(False), mx.util.np_shape(False):  # save_symbol's semantics
            saved = mx.nd.load(weights)
    except mx.MXNetError:
        raise PretrainedError(f'{weights}: not a readable MXNet parameter file') from None
    if not isinstance(saved, dict):
        raise PretrainedError(f'{weights}: holds unnamed arrays, not a graph\'s arg:/aux: values')
    shapes = {k.split(':', 1)[-1]: v.shape for k, v in saved.items()}
    try:  # MXNet itself would say so only at the first batch, as a traceback
        with mx.util.np_array(False), mx.util.np_shape(False):
            outputs = mx.sym.load(symbol).infer_shape_partial(
                data0=(1, 2), data1=(1, 2), data2=(1,), **shapes)[1]
    except mx.MXNetError as e:
        raise PretrainedError(f'{weights}: its arrays do not fit {SYMBOL} (files of two different '
                              f'exports?): {shorten(_mxnet_cause(e), 160)}') from None
    return block, saved, outputs


def _mxnet_cause(error):
    """The line of an MXNet error that says what is wrong (not its C++ stack trace)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    said = [l for l in lines if ('Error' in l or 'Check failed' in l) and 'Traceback' not in l]
    return (said or lines or [type(error).__name__])[0]


def check_fp32_params(path):
    """For ``explain`` (gradients): refuse a graph folder without fp32 weights; return the note
    to show for one with them (an INT8 folder), ``None`` for a model folder."""
    if not is_graph_folder(path):
        return None
    precision = read_graph_config(path)['precision']
    if not os.path.isfile(os.path.join(path, storage.PARAMS)):
        raise ConfigError(f'--model {path}: an exported {precision} graph without fp32 weights '
                          f'({storage.PARAMS}); explanations need gradients through the encoder, '
                          'which a loaded graph does not give: explain the model folder it was '
                          'exported from')
    return (f'{path} is an {precision} graph: explaining its fp32 weights ({storage.PARAMS}), '
            'since gradients do not pass through the quantized graph')
