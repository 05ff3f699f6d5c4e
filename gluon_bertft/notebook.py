"""The set-up every notebook runs in its first cell::

    import sys; sys.path.append('..')  # a checkout without pip install: the package is one folder up
    from gluon_bertft.notebook import setup  # before mxnet: gluon_bertft sets its thread count
    ROOT, SHARED, FAST, PRETRAINED, devices = setup()

Importing ``gluon_bertft`` before anything imports ``mxnet`` or ``d2l`` matters: the package
sets MXNet's OpenMP thread count, which MXNet reads once, at import (:mod:`.threads`).
"""
import os
from collections import namedtuple

Setup = namedtuple('Setup', 'root shared fast pretrained devices')


def find_root(start=None):
    """The checkout that holds ``data/snli_sample.jsonl``: the working directory, its parent
    (Jupyter runs a notebook in ``notebooks/``), or the folder above the package."""
    start = os.path.abspath(start or os.getcwd())
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (start, os.path.dirname(start), package_parent):
        if os.path.isfile(os.path.join(path, 'data', 'snli_sample.jsonl')):
            return path
    return start


FAST_ENV = 'GLUON_BERTFT_FAST'


def fast_mode(environ=os.environ):
    """Whether :data:`FAST_ENV` asks for a quick run (``1``; ``0`` or unset: no); a
    ``ConfigError`` naming the variable for any other value (``yes`` was read as no)."""
    from .common.errors import ConfigError
    text = environ.get(FAST_ENV, '0').strip()
    if text not in ('0', '1'):
        raise ConfigError(f'{FAST_ENV}={text[:40]!r}: use 1 (a quick run) or 0')
    return text == '1'


def setup(default_bert='random', seed=0):
    """Seed everything, print one line, and return :class:`Setup`:
    ``(ROOT, SHARED, FAST, PRETRAINED, devices)``.

    ``ROOT``: the checkout (:func:`find_root`); ``SHARED``: the data folder ``../shared/data``
    beside it; ``FAST``: ``GLUON_BERTFT_FAST=1`` (a quick run, the tests use it);
    ``PRETRAINED``: ``$BERT_PATH`` (a BERT in the book's format), else ``default_bert``;
    ``devices``: all GPUs, else the CPU.
    """
    from mxnet import npx

    from .training.devices import default_devices, set_seed
    npx.set_np()
    set_seed(seed)
    root = find_root()
    shared = os.path.join(os.path.dirname(root), 'shared', 'data')
    fast = fast_mode()
    bert = os.environ.get('BERT_PATH') or default_bert
    devices = default_devices()
    from .common import threads as thread_setup
    threads = (thread_setup.configured or os.environ.get('OMP_NUM_THREADS')
               or "MXNet's default number of")
    print(f'gluon_bertft from {os.path.dirname(os.path.abspath(__file__))}; devices {devices}, '
          f'{threads} OpenMP threads; FAST mode: {fast}; BERT: {bert}')
    return Setup(root, shared, fast, bert, devices)


KINDS = {'minilm': "pretrained all-MiniLM-L6-v2 (minilm, the offline model; not the book's)",
         'random': 'random initialization, not pretrained (bert.small shape)'}


def encoder_line(kind, config, vocab):
    """``BERT: KIND: 2 blocks, 256 hidden units, 4 heads, N tokens`` (``config``: the BERT's
    sizes, :func:`~gluon_bertft.models.pretrained.bert_config`)."""
    return (f'BERT: {kind}: {config["num_blks"]} blocks, {config["num_hiddens"]} hidden units, '
            f'{config["num_heads"]} heads, {len(vocab)} tokens')


def load_encoder(devices, vocab_text, sources=('bert.small', 'minilm'), dropout=0.1, log=print):
    """``(bert, vocab, source)``: the first of ``sources`` that loads (the book's pretrained
    BERT by hub name or path, then all-MiniLM-L6-v2, the offline pretrained model), else a
    randomly initialized ``bert.small`` with a vocabulary of ``vocab_text`` (texts of
    whitespace tokens). ``log`` gets why each source could not be loaded, then
    :func:`encoder_line` of the one loaded."""
    from .common.errors import PretrainedError
    from .models.pretrained import load_bert
    for source in sources:
        try:
            bert, vocab, config = load_bert(source, None, devices, dropout)
            break
        except (PretrainedError, OSError) as e:
            log(f'could not load {source}: {str(e).splitlines()[0]}')
    else:
        source = 'random'
        bert, vocab, config = load_bert('random', 'bert.small', devices, dropout, vocab_text)
    log(encoder_line(KINDS.get(source, f"pretrained, the book's format ({source})"), config, vocab))
    return bert, vocab, source
