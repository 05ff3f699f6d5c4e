"""BERT architectures: the presets, a checked config -> :class:`~gluon_bertft.models.bert.BERTModel`."""
import math

from ..common.errors import PretrainedError, shorten
from .bert import ACTIVATIONS, ARCH_KEYS, BERTModel

PRESETS = {
    'bert.small': dict(num_hiddens=256, ffn_num_hiddens=512, num_heads=4, num_blks=2, max_len=512),
    'bert.base': dict(num_hiddens=768, ffn_num_hiddens=3072, num_heads=12, num_blks=12, max_len=512),
}


# the hub presets plus the model the book pretrains in §15.10 (d2l.BERTModel's max_len 1000)
ALL_PRESETS = dict(PRESETS, **{'bert.tiny': dict(
    num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_blks=2, max_len=1000)})


CONFIG_KEYS = ('vocab_size', 'num_hiddens', 'ffn_num_hiddens', 'num_heads', 'num_blks', 'max_len')


def check_config(config, where='the model configuration'):
    """Raise ``PretrainedError`` naming ``where`` and the field unless ``config`` has every key
    of ``CONFIG_KEYS`` as a positive integer, and ``num_heads`` divides ``num_hiddens``."""
    if not isinstance(config, dict):
        raise PretrainedError(f'{where}: expected a JSON object, got {type(config).__name__}')
    for key in CONFIG_KEYS:
        value = config.get(key)
        if key not in config:
            raise PretrainedError(f'{where}: no {key!r}')
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PretrainedError(f'{where}: {key!r} is {shorten(value)}; expected a positive integer')
    if config['num_hiddens'] % config['num_heads']:
        raise PretrainedError(f'{where}: num_heads={config["num_heads"]} does not divide '
                              f'num_hiddens={config["num_hiddens"]}')
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    valid = dict(activation=lambda v: v in ACTIVATIONS, embedding_norm=lambda v: isinstance(v, bool),
                 layer_norm_eps=lambda v: number(v) and v > 0,
                 type_vocab_size=lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                 attention_dropout=lambda v: v is None or (number(v) and 0 <= v < 1))
    for key, ok in valid.items():  # the architecture switches (Hugging Face BERTs)
        if key in config and not ok(config[key]):
            raise PretrainedError(f'{where}: {key!r} is {shorten(config[key])}; not a valid value')


def build_bert(config, dropout=0.1, where='the model configuration'):
    """A :class:`BERTModel` from a config dict with the keys of ``CONFIG_KEYS`` (and any of
    the architecture switches ``ARCH_KEYS``: Hugging Face BERTs), checked (:func:`check_config`)."""
    check_config(config, where)
    return BERTModel(config['vocab_size'], config['num_hiddens'], config['ffn_num_hiddens'],
                     config['num_heads'], config['num_blks'], dropout, config['max_len'],
                     **{k: config[k] for k in ARCH_KEYS if k in config})


def bert_config(bert):
    """The config dict (``CONFIG_KEYS``) of a :class:`BERTModel`, read off its blocks."""
    enc = bert.encoder
    blk = enc.blks[0]
    vocab_size, num_hiddens = enc.token_embedding.weight.shape
    return dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                ffn_num_hiddens=blk.ffn.dense1.weight.shape[0], num_heads=blk.attention.num_heads,
                num_blks=len(enc.blks), max_len=enc.pos_embedding.shape[1],
                **getattr(bert, 'arch', {}))


def check_vocab_fits(num_tokens, vocab_size, where, exact=False):
    """``PretrainedError`` naming ``where`` unless a tokenizer of ``num_tokens`` fits an
    embedding table of ``vocab_size`` rows: more tokens would index past the table (MXNet clips
    such ids to its last row, silently); fewer are padding rows (models are often padded to a
    multiple of 8 or 64), allowed unless ``exact`` (the book's own files)."""
    if exact and num_tokens != vocab_size:
        raise PretrainedError(f'{where}: the vocabulary has {num_tokens} tokens, config.json '
                              f'says vocab_size {vocab_size}')
    if num_tokens > vocab_size:
        raise PretrainedError(f'{where}: the tokenizer has {num_tokens} tokens but the embedding '
                              f'table {vocab_size} rows (vocab_size); the ids past it would be '
                              'read as the last row')


def check_segments(dataset, net, where):
    """``PretrainedError`` naming ``where`` if the encoded ``dataset`` puts a token in a segment
    that ``net``'s segment embedding lacks (a model with ``type_vocab_size`` 1 given text
    pairs: MXNet would clip segment 1 to 0, silently)."""
    num_types = getattr(net, 'type_vocab_size', None) or net.encoder.segment_embedding.weight.shape[0]
    if dataset is not None and len(dataset) and int(dataset.all_segments.max()) >= num_types:
        raise PretrainedError(f'{where}: the model has {num_types} segment type(s) '
                              f'(type_vocab_size), but the input has text pairs (segment '
                              f'{int(dataset.all_segments.max())}); give it single texts, or use '
                              'a model with type_vocab_size 2')
