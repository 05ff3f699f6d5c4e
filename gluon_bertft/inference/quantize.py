"""Calibrated INT8 post-training quantization (``python -m gluon_bertft quantize``).

The recipe (GluonNLP's BERT INT8 on MXNet: calibrated activations, sensitive layers in fp32),
with MXNet 1.9.1's own parts (``mx.contrib.quantization``, backend ``MKLDNN_QUANTIZE``):

1. The model's fast inference copy (:func:`~gluon_bertft.inference.fast.inference_net`, fused
   attention) is exported as a graph (:func:`~gluon_bertft.inference.graph.export_symbol`) and
   fused for oneDNN (``get_backend_symbol('MKLDNN_QUANTIZE')``). ``quantize_net`` itself is not
   used: it probes the block with legacy ``mx.nd`` arrays and fails on numpy-mode blocks.
2. The fp32 graph runs on the calibration rows (the task's training format, labels ignored)
   and every layer output to be quantized is recorded (an executor monitor): min/max
   (``naive``), histograms for KL-optimal thresholds (``entropy``), or min/max with
   GluonNLP's ``BertLayerCollector`` clipping (``customize``: activation outputs' maximum at
   :data:`CLIP_MAX`, LayerNorm outputs' minimum at :data:`CLIP_MIN`).
3. ``quantize_graph`` + the thresholds give the INT8 graph: every ``FullyConnected`` (fused
   with its activation), the embeddings and the attention's value product in INT8
   (``quantized_dtype='auto'``: uint8 after non-negative outputs). The fused ``selfatt_qk``
   stays fp32 (:data:`ALWAYS_FP32`: its quantized form crashes MXNet 1.9.1 on this graph).
4. Fidelity to the fp32 graph on the calibration rows (:func:`fidelity`): argmax agreement
   and KL divergence of the output distributions. Below :data:`MIN_AGREEMENT`, the layers are
   ranked by the KL the graph has with each one alone kept in fp32 (on every k-th batch, about
   :data:`RANK_BATCHES` of them, spread over the lengths), and kept in fp32 in that order until
   the agreement on all the rows is reached. The layers kept are recorded in ``config.json``.

The result is a graph folder (:mod:`~gluon_bertft.inference.graph`, ``precision`` ``int8``)
with the fp32 ``model.params`` beside it for ``explain``. INT8 is a CPU path.
"""
import json
import os

import mxnet as mx
import numpy as onp
from mxnet.contrib import quantization as mxq

from ..common import storage
from ..common.errors import ConfigError, DataError
from ..common.files import check_regular
from ..common.outputs import check_out_folder
from ..data.batching import make_iter
from ..models import build
from . import graph
from .fast import inference_net
from .fidelity import fidelity
from .folders import model_config
from .predict import load_model, read_with, vocabulary_of

CALIB_MODES = ('naive', 'entropy', 'customize')
MIN_AGREEMENT = 0.99  # default argmax agreement with fp32 that the layer choice reaches
MIN_ROWS = 8          # fewer calibration rows are refused
CLIP_MIN, CLIP_MAX = -5.0, 8.0  # customize: GluonNLP's BertLayerCollector clipping
ALWAYS_FP32 = ['_sg_mkldnn_selfatt_qk']
CANDIDATES = ('_sg_mkldnn_fully_connected', 'Embedding', '_sg_mkldnn_selfatt_valatt')
BATCH = 32
RANK_BATCHES = 2  # the layers are ranked on about this many of the calibration batches
VNNI_FLAGS = ('avx512_vnni', 'avx_vnni', 'amx_int8')


def cpu_flags(path='/proc/cpuinfo'):
    """The CPU's feature flags (empty where ``path`` cannot be read)."""
    try:
        with open(path, encoding='utf-8') as f:
            return next((set(line.split(':', 1)[1].split()) for line in f
                         if line.startswith('flags')), set())
    except OSError:
        return set()


def check_devices(devices):
    """``ConfigError`` for any device but the CPU: INT8 here is oneDNN's, a CPU path."""
    if any(d.device_type != 'cpu' for d in devices):
        raise ConfigError('--devices: INT8 quantization is a CPU path (MXNet\'s oneDNN '
                          'operators); give --devices cpu')


def calibration_rows(task, path, calib_rows, seed=0, encoding=None):
    """Up to ``calib_rows`` rows of ``path`` read as ``task``'s training data (labels ignored;
    in ``encoding`` when given, else the model's training data's), a seeded sample in file
    order when there are more. ``DataError`` for fewer than :data:`MIN_ROWS` (an empty file
    included), naming the file."""
    rows = read_with(task, path, encoding, labelled=False)
    if len(rows) < MIN_ROWS:
        raise DataError(f'--calibration {path}: {len(rows)} row(s); calibration needs at least '
                        f'{MIN_ROWS} (a few hundred rows like the data the model will see)')
    if len(rows) > calib_rows:
        keep = onp.sort(onp.random.RandomState(seed).choice(len(rows), calib_rows, replace=False))
        rows = [rows[i] for i in keep]
    return rows


def nd_batches(dataset):
    """``[(tokens, segments, valid_lens)]`` of ``dataset`` as legacy arrays, batches of
    :data:`BATCH` sorted by length (MXNet's executors take ``mx.nd`` arrays)."""
    return [tuple(x.as_nd_ndarray() for x in features)
            for features, _ in make_iter(dataset, BATCH, False, sort=True)]


def run_symbol(symbol, args, auxs, batches, monitor=None):
    """Host outputs of ``symbol`` per batch: a list of lists of numpy arrays. ``monitor``:
    a callback ``(name, array handle)`` for every operator's output."""
    results = []
    os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')  # no log line for every bind
    for batch in batches:
        exe = symbol.bind(mx.cpu(), dict(args, **dict(zip(graph.INPUTS, batch))),
                          aux_states=auxs, grad_req='null')
        if monitor is not None:
            exe.set_monitor_callback(monitor, monitor_all=True)
        results.append([o.asnumpy() for o in exe.forward(is_train=False)])
    return results


class ClippedMinMax(mxq._LayerOutputMinMaxCollector):
    """``customize``: min/max per layer output, with GluonNLP's ``BertLayerCollector`` rule:
    the maximum of activation outputs (fused ``eltwise``) clipped at :data:`CLIP_MAX`, the
    minimum of LayerNorm outputs at :data:`CLIP_MIN`."""

    def thresholds(self):
        clipped = {}
        for name, (low, high) in self.min_max_dict.items():
            if 'eltwise' in name:
                high = min(high, CLIP_MAX)
            if 'layer_norm' in name or 'layernorm' in name:
                low = max(low, CLIP_MIN)
            clipped[name] = (low, high)
        return clipped


def thresholds(fsym, args, auxs, batches, mode, layers):
    """``{layer output: (min, max)}`` for the outputs ``layers`` of the fp32 graph ``fsym`` on
    ``batches``, by calibration ``mode`` (:data:`CALIB_MODES`)."""
    if mode == 'entropy':
        collector = mxq._LayerHistogramCollector(include_layer=layers)
    elif mode == 'naive':
        collector = mxq._LayerOutputMinMaxCollector('auto', include_layer=layers)
    else:
        collector = ClippedMinMax('auto', include_layer=layers)
    run_symbol(fsym, args, auxs, batches, monitor=collector.collect)
    if mode == 'entropy':
        return mxq._get_optimal_thresholds(collector.hist_dict, 'auto', logger=None)
    return collector.thresholds() if mode == 'customize' else collector.min_max_dict


def quantized_graph(fsym, args, auxs, th_dict, fp32_nodes):
    """``(symbol, args, auxs)`` of ``fsym`` with everything but ``fp32_nodes`` (and
    :data:`ALWAYS_FP32`) in INT8, calibrated by ``th_dict``, fused for oneDNN."""
    qsym, qargs, qauxs, _ = mxq.quantize_graph(
        fsym, args, auxs, mx.cpu(), excluded_sym_names=list(fp32_nodes),
        excluded_op_names=ALWAYS_FP32, calib_mode='none', quantized_dtype='auto',
        quantize_mode='full')
    calibrated = type('Thresholds', (), {'min_max_dict': th_dict})
    qsym, qargs, qauxs = mxq.calib_graph(qsym, args, auxs, calibrated, calib_mode='naive',
                                         quantized_dtype='auto', logger=None)
    return qsym.get_backend_symbol('MKLDNN_QUANTIZE'), qargs, qauxs


def calib_layers(fsym, args, auxs, fp32_nodes):
    """The layer outputs whose ranges the INT8 graph without ``fp32_nodes`` needs."""
    _, _, _, collector = mxq.quantize_graph(
        fsym, args, auxs, mx.cpu(), excluded_sym_names=list(fp32_nodes),
        excluded_op_names=ALWAYS_FP32, calib_mode='naive', quantized_dtype='auto',
        quantize_mode='full')
    return collector.include_layer


def layer_names(fsym, copy):
    """``{node: layer}`` for the nodes of ``fsym`` that may be quantized (:data:`CANDIDATES`):
    the structural name of the layer whose weight the node reads (``encoder.blks.0.ffn.dense1``),
    for the attention's value product its projection's block (``...attention.value_product``)."""
    by_param = {p.name: s.rsplit('.', 1)[0] for s, p in copy._collect_params_with_prefix().items()}
    nodes = json.loads(fsym.tojson())['nodes']
    names = {}
    for node in nodes:
        if node['op'] not in CANDIDATES:
            continue
        inputs = [nodes[i[0]]['name'] for i in node['inputs']]
        layer = next((by_param[n] for n in inputs if n in by_param), None)
        if layer is None:
            before = next((names[n] for n in inputs if n in names), node['name'])
            layer = before.rsplit('.', 1)[0] + '.value_product'
        names[node['name']] = layer
    return names


def choose_fp32(fsym, args, auxs, th_dict, batches, names, min_agreement, log=print):
    """``(fp32 nodes, fidelity, (symbol, args, auxs))``: the INT8 graph whose argmax agreement
    with the fp32 graph on ``batches`` reaches ``min_agreement``, with layers kept in fp32
    one by one in the order of their harm (the divergence of the graph with that layer alone
    in fp32, lowest first) until it does; none if the all-INT8 graph reaches it."""
    reference = run_symbol(fsym, args, auxs, batches)
    lens = [batch[2].asnumpy() for batch in batches]

    def measure(fp32, step=1):  # on every step-th batch
        q = quantized_graph(fsym, args, auxs, th_dict, fp32)
        return fidelity(reference[::step], run_symbol(*q, batches[::step]), lens[::step]), q

    report, q = measure([])
    log(f'all layers in INT8: argmax agreement {report["agreement"]:.4f}, divergence '
        f'{report["divergence"]:.5f} on {report["count"]} outputs')
    fp32 = []
    if report['agreement'] >= min_agreement:
        return fp32, report, q
    step = max(1, len(batches) // RANK_BATCHES)
    ranked = sorted(names, key=lambda n: measure([n], step)[0]['divergence'])
    for node in ranked:
        fp32.append(node)
        report, q = measure(fp32)
        log(f'{len(fp32)} layer(s) in fp32 (+{names[node]}): agreement '
            f'{report["agreement"]:.4f}, divergence {report["divergence"]:.5f}')
        if report['agreement'] >= min_agreement:
            break
    return fp32, report, q


def check_inputs(model, calibration, out, calib_mode, calib_rows, devices):
    """Every refusal before any work: ``--out`` by the output rule (never ``--model`` or
    ``--calibration``), a graph folder as ``--model``, a device but the CPU, an unknown mode."""
    check_out_folder(out, '--out', [('--model', model), ('--calibration', calibration)],
                     names=graph.files('int8'))
    graph.check_source(model, '--model')
    check_devices(devices)
    if calib_mode not in CALIB_MODES:
        raise ConfigError(f'--calib-mode {calib_mode!r}: choose from {", ".join(CALIB_MODES)}')
    if not isinstance(calib_rows, int) or calib_rows < MIN_ROWS:
        raise ConfigError(f'--calib-rows {calib_rows!r}: give at least {MIN_ROWS}')
    if not os.path.exists(calibration):
        raise DataError(f'--calibration {calibration}: no such file')
    check_regular(calibration)  # a folder, named pipe or device: named as such


def quantize(model, calibration, out, calib_mode='customize', calib_rows=256, devices=None,
             log=print, options=None):
    """Write the INT8 graph folder ``out`` of the model folder ``model``, calibrated on up to
    ``calib_rows`` rows of ``calibration`` (the task's training format, labels ignored) by
    ``calib_mode`` (module docstring), keeping layers in fp32 until the argmax agreement with
    fp32 reaches ``options['min_agreement']`` (default :data:`MIN_AGREEMENT`). Returns the fidelity report (``agreement``,
    ``divergence``, ``count``, ``fp32_layers``). Raises ``ConfigError`` / ``DataError`` naming
    the option or file (:func:`check_inputs`, :func:`calibration_rows`); warns (``log``) on a
    CPU without VNNI instructions, where INT8 may be slower than fp32, and (as ``evaluate``
    does: :meth:`Task.check_coverage`) when over 30 % of the calibration text falls into
    unknown tokens, a ``DataError`` above ``options['max_unknown']``. ``model``: a model folder
    or a Hugging Face task folder; ``options``: ``min_agreement`` (``--min-agreement``), the
    calibration file's ``encoding`` (default: the model's) and ``max_unknown``
    (``--encoding``, ``--max-unknown``)."""
    options = options or {}
    check_inputs(model, calibration, out, calib_mode, calib_rows, devices or [mx.cpu()])
    if not cpu_flags() & set(VNNI_FLAGS):
        log('warning: this CPU has no AVX512-VNNI (nor AVX-VNNI): oneDNN runs INT8 without its '
            'int8 dot-product instructions, and INT8 may be no faster than fp32 (docs/speed.md)')
    net, vocab, task = load_model(model, [mx.cpu()])
    config = model_config(model, net, task)
    rows = calibration_rows(task, calibration, calib_rows, encoding=options.get('encoding'))
    task.check_coverage(rows, vocab, calibration, vocabulary_of(model), options.get('max_unknown'),
                        log)
    dataset = task.encode(rows, vocab, log=lambda *_: None)
    build.check_segments(dataset, net, calibration)
    batches = nd_batches(dataset)
    copy = inference_net(net, onednn=False)
    symbol, args, auxs = graph.export_symbol(copy)
    fsym = symbol.get_backend_symbol('MKLDNN_QUANTIZE')
    names = layer_names(fsym, copy)
    layers = set(calib_layers(fsym, args, auxs, []))
    for node in names:  # the outputs a graph with one layer in fp32 needs, too
        layers |= set(calib_layers(fsym, args, auxs, [node]))
    log(f'calibrating {len(layers)} layer outputs on {len(rows)} rows of {calibration} '
        f'({calib_mode})')
    th_dict = thresholds(fsym, args, auxs, batches, calib_mode, layers)
    min_agreement = options.get('min_agreement')
    min_agreement = MIN_AGREEMENT if min_agreement is None else min_agreement
    fp32, report, (qsym, qargs, qauxs) = choose_fp32(fsym, args, auxs, th_dict, batches, names,
                                                     min_agreement, log)
    report = dict(report, fp32_layers=[names[n] for n in fp32])

    def write(folder):
        graph.save_symbol(folder, qsym, qargs, qauxs)
        if not os.path.isfile(os.path.join(model, storage.PARAMS)):  # a Hugging Face folder
            net.save_parameters(os.path.join(folder, storage.PARAMS))  # the fp32 weights, ours
        return dict(precision='int8', fp32_layers=report['fp32_layers'], quantization=dict(
            calib_mode=calib_mode, calib_rows=len(rows), calibration=os.path.abspath(calibration),
            agreement=report['agreement'], divergence=report['divergence'],
            min_agreement=min_agreement, always_fp32_ops=ALWAYS_FP32, source=os.path.abspath(model)))
    graph.write_graph_folder(out, model, config, write, keep_fp32=True)
    log(f'wrote {out}: INT8 graph ({len(fp32)} layer(s) kept in fp32), agreement '
        f'{report["agreement"]:.4f} with fp32 on the calibration rows')
    return report
