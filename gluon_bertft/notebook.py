"""The set-up every notebook runs in its first cell::

    import sys; sys.path.append('..')  # a checkout without pip install: the package is one folder up
    from gluon_bertft.notebook import setup  # before mxnet: gluon_bertft sets its thread count
    ROOT, SHARED, FAST, PRETRAINED, devices = setup()

Importing ``gluon_bertft`` before anything imports ``mxnet`` or ``d2l`` matters: the package
sets MXNet's OpenMP thread count, which MXNet reads once, at import (:mod:`.threads`).

The BERT a notebook fine-tunes: ``$BERT_PATH`` when set (any ``--pretrained`` source;
``BERT_PATH=random`` is the switch for random initialization, ``BERT_PATH=minilm`` for MiniLM),
else ``setup(default_bert=...)``: the task notebooks pass ``('bert.small', 'minilm')``, the
book's model, then the offline MiniLM, then random (:func:`choose_bert`). ``GLUON_BERTFT_FAST=1``
makes the quick run the tests execute.
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
    ``PRETRAINED``: ``$BERT_PATH`` (any ``--pretrained`` source: a BERT in the book's format,
    ``minilm``, ``hf:ID``, a folder, or ``random`` for random initialization), else
    ``default_bert``: a source, or a tuple of sources of which the first at hand is taken, else
    ``'random'`` (:func:`choose_bert`, which says why each one is not at hand);
    ``devices``: all GPUs, else the CPU. Downloads go where the CLI run from ``ROOT`` puts
    them, ``ROOT/../data``, unless ``$GLUON_BERTFT_DATA`` says otherwise.
    """
    from mxnet import npx

    from .training.devices import default_devices, set_seed
    npx.set_np()
    set_seed(seed)
    root = find_root()
    shared = os.path.join(os.path.dirname(root), 'shared', 'data')
    from .models.pretrained import DATA_DIR_ENV
    # the CLI's ../data from the checkout, not notebooks/../data (the checkout's own data/)
    os.environ.setdefault(DATA_DIR_ENV, os.path.join(os.path.dirname(root), 'data'))
    fast = fast_mode()
    bert = os.environ.get('BERT_PATH') or (
        choose_bert(default_bert) if isinstance(default_bert, tuple) else default_bert)
    devices = default_devices()
    from .common import threads as thread_setup
    threads = (thread_setup.configured or os.environ.get('OMP_NUM_THREADS')
               or "MXNet's default number of")
    print(f'gluon_bertft from {os.path.dirname(os.path.abspath(__file__))}; devices {devices}, '
          f'{threads} OpenMP threads; FAST mode: {fast}; BERT: {bert}')
    return Setup(root, shared, fast, bert, devices)


KINDS = {'minilm': "pretrained all-MiniLM-L6-v2 (minilm, the offline model; not the book's)",
         'random': 'random initialization, not pretrained'}
BOOK_THEN_MINILM = ('bert.small', 'minilm')  # the order the notebooks fall back in, then random


def choose_bert(sources=BOOK_THEN_MINILM, log=print):
    """The name of the first of ``sources`` that is at hand, else ``'random'``; nothing is
    loaded. A hub name (``bert.small``) is at hand once downloaded (offline the download fails
    within seconds), ``minilm`` when its wheel is installed (``make minilm``), a path when it
    exists, ``random`` always. ``log`` gets one line on why each source before the chosen one
    is not at hand."""
    from .common.errors import PretrainedError
    from .models import pretrained
    for source in sources:
        if source == 'random':
            return source
        try:
            pretrained.hf_source(source) or pretrained.resolve_source(source)
            return source
        except (PretrainedError, OSError) as e:
            log(f'could not load {source}: {str(e).splitlines()[0]}')
    return 'random'


def encoder_line(kind, config, vocab):
    """``BERT: KIND: 2 blocks, 256 hidden units, 4 heads, N tokens`` (``config``: the BERT's
    sizes, :func:`~gluon_bertft.models.pretrained.bert_config`)."""
    return (f'BERT: {kind}: {config["num_blks"]} blocks, {config["num_hiddens"]} hidden units, '
            f'{config["num_heads"]} heads, {len(vocab)} tokens')


def describe_bert(source, net, vocab):
    """:func:`encoder_line` of the BERT loaded from ``source`` (a name :func:`choose_bert`
    returned); ``net``: that BERT, or a fine-tuned network holding its ``encoder``."""
    from .models.build import bert_config
    from .models.pretrained import hf_source
    kind = KINDS.get(source) or (f"pretrained, Hugging Face's format ({source})"
                                 if source.startswith('hf:') or hf_source(source)
                                 else f"pretrained, the book's format ({source})")
    return encoder_line(kind, bert_config(net), vocab)


def load_encoder(devices, vocab_text, sources=BOOK_THEN_MINILM, dropout=0.1, log=print):
    """``(bert, vocab, source)``: the first of ``sources`` at hand (:func:`choose_bert`: the
    book's pretrained BERT by hub name or path, then all-MiniLM-L6-v2, the offline pretrained
    model), else a randomly initialized ``bert.small`` with a vocabulary of ``vocab_text``
    (texts of whitespace tokens). ``log`` gets why each source could not be loaded, then
    :func:`describe_bert` of the one loaded. ``PretrainedError``: the chosen one is unreadable."""
    from .models.pretrained import load_bert
    source = choose_bert(sources, log)
    bert, vocab, _ = load_bert(source, 'bert.small' if source == 'random' else None, devices,
                               dropout, vocab_text if source == 'random' else None)
    log(describe_bert(source, bert, vocab))
    return bert, vocab, source
