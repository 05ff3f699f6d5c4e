"""``python -m gluon_bertft export --model DIR --format FORMAT --out OUT``: a saved model, in a
format that other software reads.

Each format is one entry of :data:`FORMATS`: its writer (``write(model, folder, log)``, which
fills the new folder) and the entries it writes into ``OUT`` (the output rule of
:mod:`~gluon_bertft.common.outputs` refuses a folder holding anything else). ``--out`` is
checked before any work and replaced as a whole at the end.

``mxnet``: MXNet's deployment graph, the exported-graph folder of
:mod:`~gluon_bertft.inference.graph` in fp32 (``quantize`` writes the INT8 one).

``hf``: the folder Hugging Face's ``save_pretrained`` writes for the ``BertFor*`` model of the
task (:mod:`~gluon_bertft.models.hf_tasks`, :mod:`~gluon_bertft.tasks.hf`), readable by
transformers, Optimum and the hub, and by this package again (``predict --model OUT``,
``finetune --pretrained OUT``).
"""
import collections
import os

import mxnet as mx

from .common import storage
from .common.errors import ConfigError
from .common.outputs import check_out_folder, replace_folder
from .inference import folders, graph
from .inference.fast import inference_net
from .inference.predict import check_model_folder, load_model
from .models import hf_tasks
from .tasks.base import is_wordpiece
from .tasks.hf import hf_fields

Format = collections.namedtuple('Format', 'write files help')
HF_FILES = ('config.json', 'model.safetensors', 'vocab.txt', 'tokenizer.json',
            'tokenizer_config.json', 'special_tokens_map.json')


def export_hf(model, folder, log=print):
    """Write the Hugging Face ``BertFor*`` folder of the saved model ``model`` into ``folder``
    (:data:`HF_FILES`). Raises ``ConfigError`` for a model Hugging Face's BERT cannot express:
    a book-format BERT (no LayerNorm after the embeddings) or a word vocabulary."""
    net, vocab, task = load_model(model, [mx.cpu()])
    bert = net.encoder.hparams
    if not bert['embedding_norm']:
        raise ConfigError(f'--model {model}: a book-format BERT has no LayerNorm after the '
                          'embeddings, which Hugging Face\'s BERT always has, so it cannot be '
                          'written as one; export it with --format mxnet')
    if not is_wordpiece(vocab):
        raise ConfigError(f'--model {model}: its vocabulary is a word list (vocab.json), not the '
                          'WordPiece tokenizer of Hugging Face\'s BERT; export it with --format mxnet')
    params = {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}
    architecture = type(task).HF_HEAD[0] if type(task).HF_HEAD else None
    fields = hf_fields(task, architecture and hf_tasks.num_outputs(params, architecture))
    hf_tasks.write_hf_task(folder, params, bert, hidden_dropout(model), fields, vocab.pad_id)
    vocab.save(folder, model_max_length=bert['max_len'])
    log(f'{fields["architectures"][0]}: {len(params)} tensors, {len(vocab)} tokens')


def hidden_dropout(model):
    """The dropout the model was fine-tuned with (``hidden_dropout_prob`` of a Hugging Face
    folder), 0.1 (BERT's) where its folder does not say."""
    stored = storage.read_json(os.path.join(model, 'config.json'))
    rate = (stored.get('finetune') or {}).get('dropout', stored.get('hidden_dropout_prob', 0.1))
    return rate if isinstance(rate, (int, float)) and not isinstance(rate, bool) else 0.1


def export_mxnet(model, folder, log=print):
    """Write the fp32 graph folder of the saved model ``model`` into ``folder``
    (:mod:`~gluon_bertft.inference.graph`): the fast inference copy's graph
    (:func:`~gluon_bertft.inference.fast.inference_net`, fused attention if its switch is on;
    the oneDNN partitioning is done again when the folder is loaded, so the graph also runs on
    an MXNet without oneDNN), the vocabulary and ``config.json``."""
    net, _, task = load_model(model, [mx.cpu()])
    config = folders.model_config(model, net, task)
    copy = inference_net(net, onednn=False)

    def write(tmp):
        graph.save_symbol(tmp, *graph.export_symbol(copy))
        return dict(precision='fp32')
    graph.fill_graph_folder(folder, model, config, write)
    log(f'{graph.SYMBOL} + {graph.WEIGHTS} (fp32), read by mx.gluon.SymbolBlock.imports')


FORMATS = {'hf': Format(export_hf, HF_FILES, "Hugging Face's save_pretrained folder (BertFor*: "
                                             'config.json, model.safetensors, tokenizer files)'),
           'mxnet': Format(export_mxnet, graph.files('fp32'), "MXNet's deployment graph "
                           '(model-symbol.json + model-0000.params, read by SymbolBlock.imports)')}


def export(model, fmt, out, log=print):
    """Write the saved model folder ``model`` in format ``fmt`` (:data:`FORMATS`) to the folder
    ``out``. Refuses, before any work: an unknown format, an ``out`` that breaks the output
    rule, a folder that is an exported graph (INT8 or ``--format mxnet``: export the float32
    model it was made from). Returns ``out``."""
    if fmt not in FORMATS:
        raise ConfigError(f'--format {fmt}: choose from {", ".join(FORMATS)}')
    check_out_folder(out, '--out', [('--model', model)], names=FORMATS[fmt].files)
    check_model_folder(model)  # absent, a file, a pipe or device, no config.json: named
    if folders.folder_kind(model) == 'graph':
        raise ConfigError(f'--model {model}: an exported graph ({folders.GRAPH_FILE}: an INT8 '
                          'or --format mxnet folder) has no weights to convert; export the '
                          'float32 model it was made from')
    with replace_folder(out) as tmp:
        FORMATS[fmt].write(model, tmp, log)
    log(f'wrote {out} ({fmt})')
    return out
