"""Saved models of every task: load, evaluate on a file, predict raw input or a whole file."""
import csv
import io
import json
import os
import sys

from mxnet import np

from ..common import storage
from ..common.errors import PretrainedError, shorten
from ..common.files import check_encoding, check_regular, read_stdin
from ..common.outputs import check_output_file, is_stdout
from ..data.batching import make_iter
from ..data.snli import LABELS, encode_pairs
from ..data.tokenize import ptb
from ..data.wordpiece import WordPiece
from ..models import build, pretrained
from ..tasks import task_from_config
from ..training.devices import default_devices
from ..training.evaluate import predict_outputs
from . import folders, graph
from .fast import inference_net

FORMATS = {'.jsonl': 'jsonl', '.csv': 'csv'}  # predict --output: the extension gives the format


def read_saved_model(path):
    """``(vocab, config, task)`` of a saved model folder, checked (:func:`storage.save_model`).

    ``config['bert']`` is the architecture; folders of earlier versions, which kept it at the
    top level, are read too. Raises ``PretrainedError`` naming the file and field.
    """
    check_model_folder(path)
    where = os.path.join(path, 'config.json')
    config = storage.read_json(where)
    if not isinstance(config, dict):
        raise PretrainedError(f'{where}: not a JSON object')
    if 'bert' not in config:  # written before the one pipeline
        config = dict(config, bert={k: config[k] for k in build.CONFIG_KEYS if k in config})
    if not isinstance(config['bert'], dict):
        raise PretrainedError(f'{where}: "bert" is {shorten(config["bert"])}, not a JSON object')
    missing = [k for k in build.CONFIG_KEYS if k not in config['bert']]
    if missing:
        raise PretrainedError(f'{where}: no {", ".join(missing)} in the model configuration')
    build.check_config(config['bert'], f'{where}: "bert"')
    task = task_from_config(config, where)
    if task.max_len > config['bert']['max_len']:
        raise PretrainedError(f'{where}: max_len {task.max_len} is longer than the BERT\'s '
                              f'{config["bert"]["max_len"]} positions')
    vocab = load_vocab(path, config)
    build.check_vocab_fits(len(vocab), config['bert']['vocab_size'], path,
                           exact=not isinstance(vocab, WordPiece))
    return vocab, config, task


def check_model_folder(path):
    """``PretrainedError`` unless ``path`` is a folder holding a ``config.json``, saying what
    it is instead: absent, a file, a named pipe or device, or a folder without one (a Hugging
    Face task folder is told apart before: :func:`load_model`)."""
    if not os.path.exists(path):  # absent, or a symbolic link to nothing (or to itself)
        raise PretrainedError(f'{path}: no such model folder' + (
            ' (a symbolic link to nothing)' if os.path.islink(path) else ''))
    if not os.path.isdir(path):
        check_regular(path, PretrainedError)  # a pipe or device, named as such
        raise PretrainedError(f'{path}: a file, not a model folder (give the folder finetune '
                              'wrote, OUT/model)')
    if not os.path.lexists(os.path.join(path, 'config.json')):
        raise PretrainedError(f'{path}: not a saved model folder (no config.json; finetune '
                              'writes one in OUT/model)')


def load_vocab(path, config=None):
    """The vocabulary of a model folder: ``vocab.json`` (the book's word vocabulary), or the
    WordPiece tokenizer of a Hugging Face model (``tokenizer.json`` / ``vocab.txt``).
    ``config`` (its ``config.json``) tells which is missing when neither is there."""
    if any(os.path.lexists(os.path.join(path, n)) for n in ('tokenizer.json', 'vocab.txt')):
        return WordPiece.from_folder(path)
    where = os.path.join(path, 'vocab.json')
    if not os.path.lexists(where) and (config or {}).get('bert', {}).get('embedding_norm'):
        raise PretrainedError(f'{path}: no tokenizer.json or vocab.txt: this model was fine-tuned '
                              f'from a Hugging Face BERT ({shorten(config.get("pretrained"))}), '
                              'whose tokenizer files are saved beside it; they are missing')
    if not os.path.lexists(where):
        raise PretrainedError(f'{path}: not a saved model (no vocab.json)')
    return pretrained.vocab_from_tokens(storage.read_json(where), where)


def load_model(path, devices=None, fp32=False):
    """``(net, vocab, task)`` of a model folder written by :func:`~gluon_bertft.finetune.finetune`
    (or an SNLI classifier folder of an earlier version), or of a Hugging Face task folder
    (:func:`~gluon_bertft.inference.folders.load_hf_task`), hybridized, on ``devices``.

    An exported-graph folder (:mod:`~gluon_bertft.inference.graph`: ``export --format mxnet``,
    ``quantize``) gives its loaded graph, or with ``fp32`` its fp32 ``model.params`` (INT8
    folders keep them; an fp32 graph folder has none: ``ConfigError``), for gradients."""
    devices = devices or default_devices()
    kind = folders.folder_kind(path) if os.path.isdir(path) else None
    if kind == 'hf':
        return folders.load_hf_task(path, devices)
    vocab, config, task = read_saved_model(path)
    if kind == 'graph':
        if not fp32:
            return graph.load_graph(path, devices)[0], vocab, task
        graph.check_fp32_params(path)
    params = storage.params_file(path)
    loaded = pretrained.read_params(params)
    # before the model is built: a config.json that does not fit could ask for a huge one
    pretrained.check_fits(config['bert'], loaded, path, 'config.json', os.path.basename(params))
    net = task.head(build.build_bert(config['bert'], dropout=0.0))
    pretrained.load_param_dict(net, loaded, params, devices)
    net.hybridize(static_alloc=True)
    return net, vocab, task


def predict_snli(net, vocab, premise, hypothesis, max_len=128):
    """Predict 'entailment', 'contradiction' or 'neutral' for one premise/hypothesis pair.

    Like the book's ``predict_snli``; the sentences are token lists (the book's), or raw
    strings encoded as in training: split as SNLI's text was for the book's word vocabulary
    (:func:`~gluon_bertft.data.tokenize.ptb`, the rule of every path: tokenized text stays as
    it is), as they are for a WordPiece tokenizer. The network runs on the device its
    parameters are on.
    """
    if isinstance(vocab, WordPiece):  # a Hugging Face model's tokenizer (e.g. MiniLM's)
        join = lambda s: s if isinstance(s, str) else ' '.join(s)
        tokens, segments, valid_lens = vocab.encode_texts([(join(premise), join(hypothesis))], max_len)
    else:
        join = lambda s: ' '.join(ptb(s) if isinstance(s, str) else s)
        tokens, segments, valid_lens = encode_pairs([join(premise)], [join(hypothesis)], vocab, max_len)
    width = int(valid_lens[0])
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    inputs = (np.array(tokens[:, :width], ctx=device, dtype='int32'),
              np.array(segments[:, :width], ctx=device, dtype='int32'),
              np.array(valid_lens, ctx=device))
    return LABELS[int(net(inputs).argmax(axis=1)[0])]


def data_source(data_file):
    """``data_file``, or for ``-`` standard input read whole
    (:class:`~gluon_bertft.common.files.Stdin`: messages name it ``<stdin>:LINE``)."""
    return read_stdin() if is_stdout(data_file) else data_file


def read_with(task, data_file, encoding=None, labelled=True):
    """The rows of ``data_file`` (a path, or :func:`data_source`'s standard input) read as
    ``task``'s training data, in ``encoding`` when given (``--encoding``; else the one the
    model was trained with)."""
    if encoding is not None:
        check_encoding(encoding)
        task.config['reader']['encoding'] = encoding
    return task.read(data_file, labelled=labelled)


def vocabulary_of(path):
    """How a coverage warning names a saved model's vocabulary."""
    return f"the vocabulary of the model {path}"


def evaluate_file(path, data_file, batch_size=64, devices=None, encoding=None, max_unknown=None,
                  log=print):
    """The task's metrics (a dict) of a saved model on a file read with the model's reader
    (``-``: standard input, :func:`data_source`), computed by its fast inference copy (:func:`~gluon_bertft.inference.fast.inference_net`).
    The vocabulary's coverage of the file is checked first (:meth:`Task.check_coverage`: a
    warning to ``log`` above 30 % of the characters in unknown tokens, ``DataError`` above
    ``max_unknown``)."""
    devices = devices or default_devices()
    net, vocab, task = load_model(path, devices)
    data_file = data_source(data_file)  # '-': standard input
    rows = read_with(task, data_file, encoding)
    task.check_coverage(rows, vocab, data_file, vocabulary_of(path), max_unknown, log)
    dataset = task.encode(rows, vocab)
    build.check_segments(dataset, net, path)
    outputs = predict_outputs(inference_net(net), make_iter(dataset, batch_size, False, sort=True),
                              devices)
    return task.score(outputs, rows, dataset)


RAW_WHERE = '<input>'  # the ``where`` of a prediction record of raw input


def raw_outputs(net, vocab, task, inputs, max_unknown=None, log=print):
    """``(rows, dataset, outputs)`` of raw input (:func:`predict`), the vocabulary's coverage
    of it checked first (:meth:`Task.check_coverage`)."""
    rows = task.raw_rows(task.raw_inputs(inputs))
    task.check_coverage(rows, vocab, 'the input', "the model's vocabulary", max_unknown, log)
    dataset = task.encode(rows, vocab, log=lambda *_: None)
    build.check_segments(dataset, net, 'the model')
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    return rows, dataset, predict_outputs(net, make_iter(dataset, 1, False), [device])


def predict(net, vocab, task, max_unknown=None, log=print, **inputs):
    """The prediction for raw input as a string (the task's ``show``: the label, the score,
    the tags, the answer): ``premise``/``hypothesis`` (snli), ``text`` (and ``text_b``) for the
    text tasks and tagging (words separated by spaces, or characters for a model trained one
    character a line), ``question`` and ``passage`` for QA. A warning goes to ``log`` when over
    30 % of the input's characters fall into unknown tokens; above ``max_unknown`` (a
    fraction) it is a ``DataError``."""
    rows, dataset, outputs = raw_outputs(net, vocab, task, inputs, max_unknown, log)
    return task.show(outputs, rows, dataset)


def predict_record(net, vocab, task, max_unknown=None, log=print, **inputs):
    """The prediction for raw input as the record ``predict --data`` writes for a row
    (``where`` is ``'<input>'``): ``label`` and ``probabilities``, ``score``, ``words``/``tags``/
    ``confidence`` or ``id``/``answer``/``score``. Arguments as :func:`predict`'s."""
    rows, dataset, outputs = raw_outputs(net, vocab, task, inputs, max_unknown, log)
    return dict(where=RAW_WHERE, **task.records(outputs, rows, dataset)[0])


def describe_prediction(record, others=3):
    """A prediction record as one line: ``negative 0.93 (positive 0.07)`` (the label, its
    probability and up to ``others`` next classes), the score (regression), ``word/TAG`` pairs
    (tagging), the answer and its score (QA)."""
    if 'label' in record:
        ranked = sorted(record['probabilities'].items(), key=lambda kv: -kv[1])
        rest = ', '.join(f'{name} {p:.2f}' for name, p in ranked[1:1 + others])
        return f'{ranked[0][0]} {ranked[0][1]:.2f}' + (f' ({rest})' if rest else '')
    if 'answer' in record:
        if not record['answer']:
            return '(no answer)'
        return f'{record["answer"]} (score {record["score"]:.2f})'
    if 'tags' in record:
        return ' '.join(f'{w}/{t}' for w, t in zip(record['words'], record['tags']))
    return f'{record["score"]:.3f}'


def predict_file(path, data_file, out_file, batch_size=64, devices=None, log=print,
                 encoding=None, max_unknown=None):
    """Write one prediction per input of ``data_file`` (read as the model's training data, gold
    labels optional; ``-``: standard input, :func:`data_source`) to ``out_file``: a ``.jsonl`` (JSON lines) or ``.csv`` file, written
    atomically, or ``-``: JSON lines on standard output (``log`` should then print to
    standard error).

    Each record has the input's place (``where``) and the task's prediction: ``label`` and
    ``probabilities`` (classifiers), ``score`` (regress), ``words``/``tags``/``confidence``
    (tag), ``id``/``answer``/``score`` (qa), computed by the model's fast inference copy
    (:func:`~gluon_bertft.inference.fast.inference_net`). Returns the number of records.
    ``out_file`` is checked first (:func:`~gluon_bertft.common.outputs.check_output_file`: never
    ``data_file`` or inside the model folder ``path``): ``ConfigError`` naming ``--output``.
    The vocabulary's coverage of the file is checked as :func:`evaluate_file` checks it.
    """
    form = check_output_file(out_file, '--output', [('--data', None if is_stdout(data_file)
                                                     else data_file), ('--model', path)],
                             FORMATS, stdout=True)
    devices = devices or default_devices()
    net, vocab, task = load_model(path, devices)
    data_file = data_source(data_file)
    rows = read_with(task, data_file, encoding, labelled=False)
    task.check_coverage(rows, vocab, data_file, vocabulary_of(path), max_unknown, log)
    dataset = task.encode(rows, vocab, log=log)
    build.check_segments(dataset, net, path)
    outputs = predict_outputs(inference_net(net), make_iter(dataset, batch_size, False, sort=True),
                              devices)
    records = [dict(where=_where(row, data_file, i), **rec)
               for i, (row, rec) in enumerate(zip(rows, task.records(outputs, rows, dataset)))]
    if is_stdout(out_file):
        _write_records(records, form, sys.stdout)
        sys.stdout.flush()
        return len(records)
    with storage.atomic_path(out_file) as tmp, open(tmp, 'w', encoding='utf-8', newline='') as f:
        _write_records(records, form, f)
    return len(records)


def _write_records(records, form, f):
    """``records`` on the text stream ``f``: CSV (``form`` ``'csv'``) or JSON lines."""
    if form == 'csv':
        f.write(_csv(records))
    else:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + '\n')


def _where(row, data_file, i):
    where = getattr(row, 'where', None) or (f'{row.path}:{row.line}' if hasattr(row, 'line') else None)
    return where or f'{data_file}#{i + 1}'


def _csv(records):
    """CSV text of flat records: nested values (probabilities, tags) as JSON strings."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ['where'])
    writer.writeheader()
    for rec in records:
        writer.writerow({k: v if isinstance(v, (str, int, float)) or v is None
                         else json.dumps(v, ensure_ascii=False) for k, v in rec.items()})
    return buf.getvalue()
