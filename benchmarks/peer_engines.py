"""The two engines ``bench_peer.py`` times, each in its own worker process: the package's
classifier (``--worker``) and transformers' ``BertForSequenceClassification`` (``--peer``,
under ``--peer-python``: this module never imports mxnet or gluon_bertft at the top, so the
peer's venv needs neither), serving ``build``/``pass`` requests as JSON lines
(:func:`serve`). The batches come from the ``.npz`` that ``bench_peer.write_batches`` made.
"""
import json
import math
import os
import sys
import time

import numpy as onp

THREAD_ENV = ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')
LR, DROPOUT, NUM_CLASSES = 1e-4, 0.1, 3
# bert.small's embedding as bench_speed.py sizes it (the SNLI dev words padded to 20,256 rows):
# the dense embedding update is a large part of a bert.small step, so its size matters
SHAPES = {'bert.small': dict(num_blks=2, num_hiddens=256, num_heads=4, ffn_num_hiddens=512,
                             max_len=512, vocab_size=20256),
          'minilm': dict(num_blks=6, num_hiddens=384, num_heads=12, ffn_num_hiddens=1536,
                         max_len=512, vocab_size=30522)}
ARCH = {'relu': dict(activation='relu', embedding_norm=False, layer_norm_eps=1e-5),
        'gelu': dict(activation='gelu', embedding_norm=True, layer_norm_eps=1e-12)}
VARIANTS = {'bert.small/relu': ('bert.small', 'relu', 'words'),
            'minilm/relu': ('minilm', 'relu', 'wordpiece'),
            'minilm/gelu': ('minilm', 'gelu', 'wordpiece')}
FUSED_ENV = 'GLUON_BERTFT_TRAIN_FUSED_ATTENTION'  # finetune's --fused-attention
FIELDS = ('tokens', 'segments', 'valid_lens', 'labels')


def read_batches(path, variant):
    """``(config, [(tokens, segments, valid_lens, labels)])`` numpy batches of ``variant``."""
    shape, act, encoding = VARIANTS[variant]
    data = onp.load(path, allow_pickle=False)
    meta = json.loads(str(data['meta']))
    enc = meta['encodings'][encoding]
    encoding = enc.get('fallback', encoding)
    config = dict(SHAPES[shape], **ARCH[act])
    config['vocab_size'] = max(config['vocab_size'], enc['vocab_size'])
    batches = [tuple(data[f'{encoding}_{i}_{f}'] for f in FIELDS) for i in range(enc['batches'])]
    if enc['vocab_size'] > config['vocab_size']:  # word ids into MiniLM's 30522 rows
        batches = [(t % config['vocab_size'], s, v, y) for t, s, v, y in batches]
    return config, batches


# ---- the engines (worker processes) --------------------------------------------------------

class PackageEngine:
    """gluon_bertft's classifier, hybridized; ``make_trainer``'s Adam. Its threads come
    from ``OMP_NUM_THREADS`` in the environment the process started with."""

    def __init__(self, path, threads=None):
        import mxnet as mx

        import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
        from gluon_bertft.common import threads as gthreads
        self.path, self.sync = path, mx.nd.waitall
        self.info = dict(engine='gluon_bertft', mxnet=mx.__version__, pid=os.getpid(),
                         env={k: os.environ.get(k) for k in THREAD_ENV},
                         configured_threads=gthreads.configured)

    def build(self, variant):
        from mxnet import autograd, cpu, gluon, init, np, npx

        from gluon_bertft.models.bert import use_fused_attention
        from gluon_bertft.models.build import build_bert
        from gluon_bertft.models.heads import BERTClassifier
        from gluon_bertft.training.devices import set_seed
        from gluon_bertft.training.trainer import make_trainer
        npx.set_np()
        self.steps = self.batches = None  # the previous variant's network can go
        config, batches = read_batches(self.path, variant)
        set_seed(0)
        net = BERTClassifier(build_bert(config, DROPOUT), NUM_CLASSES)
        net.initialize(init.Normal(0.02) if variant.startswith('minilm') else init.Xavier(), ctx=cpu())
        if os.environ.get(FUSED_ENV) == '1':  # --package-fused's worker: finetune --fused-attention
            use_fused_attention(net.encoder)
        net.hybridize(static_alloc=True, static_shape=True)
        trainer, loss_fn = make_trainer(net, LR), gluon.loss.SoftmaxCrossEntropyLoss()
        self.batches = [((np.array(t, dtype='int32'), np.array(s, dtype='int32'),
                          np.array(v, dtype='float32')), np.array(y, dtype='float32'))
                        for t, s, v, y in batches]

        def train_step(batch):
            X, y = batch
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            trainer.step(y.shape[0], ignore_stale_grad=True)
            if not math.isfinite(float(loss.mean())):  # the one host sync of the step
                raise RuntimeError('loss is not finite')
            return y.shape[0]

        def infer_step(batch):
            net(batch[0]).asnumpy()
            return batch[1].shape[0]

        self.steps = dict(train=(lambda: None, train_step), infer=(lambda: None, infer_step))
        return dict(config, parameters=sum(p.data().size for p in net.collect_params().values()))


class PeerEngine:
    """transformers' ``BertForSequenceClassification`` in PyTorch eager; ``torch.optim.Adam``."""

    def __init__(self, path, threads):
        import torch
        import transformers
        torch.set_num_threads(threads)
        self.torch, self.transformers, self.path = torch, transformers, path
        self.sync = lambda: None  # eager on the CPU: every op has finished when it returns
        self.info = dict(engine='transformers', torch=torch.__version__, pid=os.getpid(),
                         transformers=transformers.__version__, num_threads=torch.get_num_threads(),
                         interop_threads=torch.get_num_interop_threads(),
                         env={k: os.environ.get(k) for k in THREAD_ENV})

    def build(self, variant):
        torch, self.steps, self.batches = self.torch, None, None
        config, batches = read_batches(self.path, variant)
        torch.manual_seed(0)
        model = self.transformers.BertForSequenceClassification(self.transformers.BertConfig(
            vocab_size=config['vocab_size'], hidden_size=config['num_hiddens'],
            num_hidden_layers=config['num_blks'], num_attention_heads=config['num_heads'],
            intermediate_size=config['ffn_num_hiddens'], hidden_act=config['activation'],
            hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT,
            max_position_embeddings=config['max_len'], type_vocab_size=2,
            layer_norm_eps=config['layer_norm_eps'], num_labels=NUM_CLASSES))
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        as_long = lambda a: torch.from_numpy(a.astype(onp.int64))
        self.batches = [(dict(input_ids=as_long(t), token_type_ids=as_long(s), attention_mask=as_long(
            onp.arange(t.shape[1])[None, :] < v[:, None])), as_long(y)) for t, s, v, y in batches]

        def train_step(batch):
            X, y = batch
            loss = model(**X, labels=y).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):  # as the package: the loss read on the host
                raise RuntimeError('loss is not finite')
            return y.shape[0]

        def infer_step(batch):
            with torch.inference_mode():
                model(**batch[0]).logits.numpy()
            return batch[1].shape[0]

        self.steps = dict(train=(model.train, train_step), infer=(model.eval, infer_step))
        return dict(config, parameters=sum(p.numel() for p in model.parameters()),
                    embedding_norm=True, classifier_dropout=DROPOUT,  # HF's, always
                    attn_implementation=model.config._attn_implementation)


def timed_pass(engine, mode):
    """One pass of ``mode`` over the engine's batches: examples/s, seconds, CPU per wall second."""
    prepare, step = engine.steps[mode]
    prepare()
    engine.sync()
    start, wall, cpu = time.time(), time.perf_counter(), time.process_time()
    n = sum(step(b) for b in engine.batches)
    engine.sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(examples_per_sec=n / wall, seconds=wall, cpu_per_wall=cpu / wall,
                examples=n, start=start, end=start + wall)


def serve(engine_class, path, threads):
    """Answer JSON requests on stdin (build, pass, quit) with JSON lines on the real stdout."""
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)  # anything else printed (libraries, C code) goes to stderr
    engine = engine_class(path, threads)
    proto.write(json.dumps(engine.info) + '\n')
    for line in sys.stdin:
        request = json.loads(line)
        if request['op'] == 'quit':
            break
        if request['op'] == 'build':
            reply = engine.build(request['variant'])
        else:
            reply = [timed_pass(engine, request['mode']) for _ in range(request.get('count', 1))]
        proto.write(json.dumps(reply) + '\n')
