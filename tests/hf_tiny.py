"""A tiny random Hugging Face BERT checkpoint, and a numpy forward of HF ``BertModel``.

:func:`write_tiny_hf_bert` writes what ``transformers`` would save for a ``BertModel`` (or,
``with_heads``, a ``BertForPreTraining``): ``config.json``, ``model.safetensors``,
``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``. :func:`hf_reference_forward`
is ``BertModel.forward`` (``transformers`` ``models/bert/modeling_bert.py``, eval mode,
absolute positions) in float64 numpy: the oracle the loader is tested against, no torch needed.
"""
import json
import math
import os

import numpy as onp
from scipy.special import erf

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'a', 'cat', 'dog', 'sat', 'on',
         'mat', 'movie', 'was', 'is', 'not', 'good', 'bad', 'very', 'fun', 'play', 'run',
         'happy', 'un', '.', ',', '!', '##s', '##ing', '##ed', '##ly', '##happy', '##er']
TINY_HF = dict(model_type='bert', architectures=['BertModel'], vocab_size=len(VOCAB),
               hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
               hidden_act='gelu', hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
               pad_token_id=0, position_embedding_type='absolute', initializer_range=0.02)


def tiny_hf_weights(config, seed=0, with_heads=False):
    """Random HF-named tensors (no ``bert.`` prefix) for ``config``; float32, std 0.2.

    ``with_heads`` adds ``cls.predictions.*`` (decoder tied: no ``decoder.weight``, its bias
    stored twice as newer transformers do) and ``cls.seq_relationship.*``.
    """
    rng = onp.random.RandomState(seed)
    H, F, V = config['hidden_size'], config['intermediate_size'], config['vocab_size']
    normal = lambda *shape: (0.2 * rng.randn(*shape)).astype('float32')
    ones = lambda n: (1 + 0.1 * rng.randn(n)).astype('float32')
    w = {'embeddings.word_embeddings.weight': normal(V, H),
         'embeddings.position_embeddings.weight': normal(config['max_position_embeddings'], H),
         'embeddings.token_type_embeddings.weight': normal(config['type_vocab_size'], H),
         'embeddings.LayerNorm.weight': ones(H), 'embeddings.LayerNorm.bias': normal(H),
         'embeddings.position_ids': onp.arange(config['max_position_embeddings'])[None],
         'pooler.dense.weight': normal(H, H), 'pooler.dense.bias': normal(H)}
    for i in range(config['num_hidden_layers']):
        p = f'encoder.layer.{i}.'
        for name in ('query', 'key', 'value'):
            w.update({f'{p}attention.self.{name}.weight': normal(H, H),
                      f'{p}attention.self.{name}.bias': normal(H)})
        w.update({f'{p}attention.output.dense.weight': normal(H, H),
                  f'{p}attention.output.dense.bias': normal(H),
                  f'{p}attention.output.LayerNorm.weight': ones(H),
                  f'{p}attention.output.LayerNorm.bias': normal(H),
                  f'{p}intermediate.dense.weight': normal(F, H),  # torch Linear: (out, in)
                  f'{p}intermediate.dense.bias': normal(F),
                  f'{p}output.dense.weight': normal(H, F), f'{p}output.dense.bias': normal(H),
                  f'{p}output.LayerNorm.weight': ones(H), f'{p}output.LayerNorm.bias': normal(H)})
    if with_heads:
        bias = normal(V)
        w.update({'cls.predictions.transform.dense.weight': normal(H, H),
                  'cls.predictions.transform.dense.bias': normal(H),
                  'cls.predictions.transform.LayerNorm.weight': ones(H),
                  'cls.predictions.transform.LayerNorm.bias': normal(H),
                  'cls.predictions.bias': bias, 'cls.predictions.decoder.bias': bias.copy(),
                  'cls.seq_relationship.weight': normal(2, H),
                  'cls.seq_relationship.bias': normal(2)})
    return w


def write_tiny_hf_bert(folder, seed=0, with_heads=False, prefix=None, extra=None, **overrides):
    """Write a tiny random HF BERT into ``folder``; return ``(config, weights)`` as written.

    ``overrides`` replace keys of :data:`TINY_HF` in ``config.json``; ``prefix`` (default
    ``'bert.'`` with heads, else none) goes before the ``BertModel`` tensor names; ``extra``
    tensors (e.g. ``classifier.weight``) are added as they are.
    """
    from safetensors.numpy import save_file
    from tokenizers import BertWordPieceTokenizer

    os.makedirs(folder, exist_ok=True)
    config = dict(TINY_HF, **overrides)
    if prefix is None:
        prefix = 'bert.' if with_heads else ''
    if with_heads:
        config['architectures'] = ['BertForPreTraining']
    weights = {(k if k.startswith('cls.') else prefix + k): v
               for k, v in tiny_hf_weights(config, seed, with_heads).items()}
    weights.update(extra or {})
    save_file(weights, os.path.join(folder, 'model.safetensors'))
    with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2)
    vocab = os.path.join(folder, 'vocab.txt')
    with open(vocab, 'w', encoding='utf-8') as f:
        f.write('\n'.join(VOCAB) + '\n')
    BertWordPieceTokenizer(vocab, lowercase=True).save(os.path.join(folder, 'tokenizer.json'))
    with open(os.path.join(folder, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump({'do_lower_case': True, 'tokenizer_class': 'BertTokenizer'}, f)
    return config, weights


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mean) / onp.sqrt(var + eps) * gamma + beta


def _activation(name, x):
    if name in ('gelu', 'gelu_python'):
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    if name in ('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'):
        return 0.5 * x * (1 + onp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == 'relu':
        return onp.maximum(x, 0)
    raise ValueError(name)


def hf_reference_forward(weights, config, input_ids, token_type_ids=None, attention_mask=None):
    """HF ``BertModel(...).last_hidden_state`` in float64 numpy (eval mode: no dropout).

    ``weights``: HF names (``bert.`` prefix optional) -> arrays; ``config``: the HF config
    dict; ``input_ids``, ``token_type_ids``, ``attention_mask``: (batch, seq) ints, mask 1 for
    tokens to attend to. Returns (batch, seq, hidden_size).
    """
    w = {k[len('bert.'):] if k.startswith('bert.') else k: onp.asarray(v, 'float64')
         for k, v in weights.items()}
    lin = lambda x, name: x @ w[name + '.weight'].T + w[name + '.bias']
    eps, heads = config['layer_norm_eps'], config['num_attention_heads']
    input_ids = onp.asarray(input_ids)
    batch, seq = input_ids.shape
    token_type_ids = onp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    attention_mask = onp.ones_like(input_ids) if attention_mask is None else attention_mask
    # BertEmbeddings: word + token type + absolute position, LayerNorm (dropout: identity)
    x = (w['embeddings.word_embeddings.weight'][input_ids]
         + w['embeddings.token_type_embeddings.weight'][onp.asarray(token_type_ids)]
         + w['embeddings.position_embeddings.weight'][onp.arange(seq)][None])
    x = _layer_norm(x, w['embeddings.LayerNorm.weight'], w['embeddings.LayerNorm.bias'], eps)
    # get_extended_attention_mask: (batch, seq) -> (batch, 1, 1, seq), 0 or the dtype's minimum
    additive = (1.0 - onp.asarray(attention_mask, 'float64'))[:, None, None, :] \
        * onp.finfo('float32').min
    d = x.shape[-1] // heads
    split = lambda t: t.reshape(batch, seq, heads, d).transpose(0, 2, 1, 3)
    for i in range(config['num_hidden_layers']):
        p = f'encoder.layer.{i}.'
        # BertSelfAttention: (batch, heads, seq, d); scores / sqrt(d) + mask, softmax over keys
        q, k, v = (split(lin(x, p + 'attention.self.' + n)) for n in ('query', 'key', 'value'))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + additive
        scores = onp.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, seq, heads * d)
        # BertSelfOutput: dense, residual, LayerNorm
        x = _layer_norm(lin(context, p + 'attention.output.dense') + x,
                        w[p + 'attention.output.LayerNorm.weight'],
                        w[p + 'attention.output.LayerNorm.bias'], eps)
        # BertIntermediate (dense + hidden_act), BertOutput (dense, residual, LayerNorm)
        h = _activation(config.get('hidden_act', 'gelu'), lin(x, p + 'intermediate.dense'))
        x = _layer_norm(lin(h, p + 'output.dense') + x, w[p + 'output.LayerNorm.weight'],
                        w[p + 'output.LayerNorm.bias'], eps)
    return x


def hf_reference_pooler(weights, last_hidden_state):
    """HF ``BertPooler``: tanh(dense(first token)); (batch, seq, H) -> (batch, H)."""
    w = {k[len('bert.'):] if k.startswith('bert.') else k: onp.asarray(v, 'float64')
         for k, v in weights.items()}
    first = last_hidden_state[:, 0]
    return onp.tanh(first @ w['pooler.dense.weight'].T + w['pooler.dense.bias'])


def hf_reference_heads(weights, config, last_hidden_state):
    """HF ``BertPreTrainingHeads``: MLM logits (batch, seq, vocab) and NSP logits (batch, 2).

    MLM: dense, ``hidden_act``, LayerNorm, decoder (weight tied to the word embeddings when
    the file has no ``cls.predictions.decoder.weight``) + ``cls.predictions.bias``;
    NSP: ``cls.seq_relationship`` on the pooler output.
    """
    w = {k[len('bert.'):] if k.startswith('bert.') else k: onp.asarray(v, 'float64')
         for k, v in weights.items()}
    lin = lambda x, name: x @ w[name + '.weight'].T + w[name + '.bias']
    h = _activation(config['hidden_act'], lin(last_hidden_state, 'cls.predictions.transform.dense'))
    h = _layer_norm(h, w['cls.predictions.transform.LayerNorm.weight'],
                    w['cls.predictions.transform.LayerNorm.bias'], config['layer_norm_eps'])
    decoder = w.get('cls.predictions.decoder.weight', w['embeddings.word_embeddings.weight'])
    mlm = h @ decoder.T + w['cls.predictions.bias']
    return mlm, lin(hf_reference_pooler(weights, last_hidden_state), 'cls.seq_relationship')
