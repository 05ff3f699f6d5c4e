"""Milliseconds of the optimizer per training step: the book's Adam and BERT's recipe (issue 15).

BERT's fine-tuning recipe (``--weight-decay 0.01 --clip-grad 1.0``, AdamW and global-norm
clipping) is what the pretrained runs use. This times, on the gradients of one real backward
pass of a ``BERTClassifier`` (batch 32, 24 tokens), everything a step does after ``backward``
for each way of doing it, in one process and alternating, ``--repeats`` rounds of ``--steps``
updates each (medians reported):

* ``book``: the book's Adam, MXNet's ``adam_update`` per parameter (``trainer.step``);
* ``book-fused``: the same Adam in MXNet's multi-tensor kernel (``FusedAdam``, no decay:
  tried for the book's run, not used there because it is not bit-for-bit ``adam_update``);
* ``book-lazy``: ``--lazy-embedding``: the book's Adam, but only the embedding rows of the
  batch (``LazyEmbeddingAdam.use_rows`` with the batch's token ids before each update);
* ``recipe-fused``: the package's default for the recipe: ``clip_global_norm`` (one
  ``multi_sum_sq`` per 45 parameters, the factor stays on the device) and ``FusedAdam``
  (decay and factor inside the kernel);
* ``recipe-single``: ``--no-fused-adam``: the same norm, the gradients multiplied by the
  factor, the decay as a pass over the weights, ``adam_update`` per parameter;
* ``recipe-before``: the code before the multi-tensor change (commit c3ec037): the norm from
  one ``(g * g).sum()`` per parameter added up on the device, ``g[:] = g * scale``, decay and
  ``adam_update`` per parameter.

Then whole training steps (forward, backward, update; examples/s) of ``book``, ``book-lazy``,
``recipe-fused`` and ``recipe-before``, alternating. Shapes: all-MiniLM-L6-v2's (6 x 384, GELU,
embedding LayerNorm, 30,522 WordPiece rows: 22.7 M parameters, 11.7 M of them the token
embedding) and the book's bert.small (2 x 256, 20,256 rows: 6.4 M), random weights.

With ``--kernels``, instead, MXNet's Adam kernels on their own, into
``benchmarks/results/adam_kernels.json``: ``adam_update``, ``adamw_update`` and
``multi_adamw_update`` on MiniLM's embedding, and the multi-tensor kernel on 45 of MiniLM's
parameter shapes in one launch against one launch each (why ``FusedAdam`` launches one tensor
at a time on CPUs).

    flock /tmp/heavy.lock python benchmarks/bench_recipe.py [--repeats 5] [--steps 10]
    flock /tmp/heavy.lock python benchmarks/bench_recipe.py --kernels

Writes ``benchmarks/results/recipe_speed.json`` (commit, load before and after, every round).
"""
import argparse
import os
import statistics
import time

import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx
from provenance import header, uptime

from gluon_bertft.common.storage import write_json
from gluon_bertft.models import pretrained
from gluon_bertft.models.heads import BERTClassifier
from gluon_bertft.training.optimizer import FusedAdam
from gluon_bertft.training.trainer import clip_global_norm, make_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'recipe_speed.json')
KERNELS_OUT = os.path.join(ROOT, 'benchmarks', 'results', 'adam_kernels.json')
BATCH, WIDTH, LR, WD, CLIP = 32, 24, 5e-5, 0.01, 1.0
LAZY_ROWS = [None]  # the token ids of the batch being updated (book-lazy)
MINILM = dict(num_blks=6, num_hiddens=384, num_heads=12, ffn_num_hiddens=1536, max_len=512,
              vocab_size=30522, activation='gelu', embedding_norm=True, layer_norm_eps=1e-12)
SHAPES = {'minilm': MINILM, 'bert.small': dict(pretrained.PRESETS['bert.small'], vocab_size=20256)}


def network(config, seed=0):
    mx.random.seed(seed)
    bert = pretrained.build_bert(config, 0.1)
    bert.initialize(mx.init.Normal(0.02))
    net = BERTClassifier(bert, 2)
    net.output.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def batches(vocab_size, seed=0, count=4):
    rng = onp.random.RandomState(seed)
    out = []
    for _ in range(count):
        lens = rng.randint(WIDTH - 8, WIDTH + 1, size=BATCH).astype('float32')
        out.append((np.array(rng.randint(5, vocab_size, (BATCH, WIDTH)), dtype='int32'),
                    np.zeros((BATCH, WIDTH), dtype='int32'), np.array(lens),
                    np.array(rng.randint(0, 2, BATCH).astype('float32'))))
    return out


def before_update(trainer, net):
    """The recipe's update as the package did it at c3ec037 (per-parameter passes)."""
    params = [p for p in trainer._params if p.grad_req != 'null']
    grads = [p.grad() for p in params]
    total = np.sqrt(sum((g * g).sum() for g in grads))
    scale = np.minimum(1.0, CLIP * BATCH / (total + 1e-6))
    for g in grads:
        g[:] = g * scale
    trainer.update(BATCH, ignore_stale_grad=True)


def fresh(net):
    """Mark every gradient fresh, as ``backward`` does (the Trainer skips stale ones)."""
    for p in net.collect_params().values():
        for arr in p.list_data():
            arr._fresh_grad = True


def updater(mode, net):
    """``update()``: what one step does after backward, for ``mode``."""
    if mode == 'book':
        trainer = make_trainer(net, LR)
        return lambda: trainer.step(BATCH, ignore_stale_grad=True)
    if mode == 'book-lazy':
        trainer = make_trainer(net, LR, lazy_embedding=True)

        def update():
            trainer.optimizer.use_rows(LAZY_ROWS[0])
            trainer.step(BATCH, ignore_stale_grad=True)
        return update
    if mode == 'book-fused':
        trainer = gluon.Trainer(net.collect_params(), FusedAdam(learning_rate=LR))
        return lambda: trainer.step(BATCH, ignore_stale_grad=True)
    multi = mode == 'recipe-fused'
    # 'recipe-before': the per-parameter trainer (its decay pass equals c3ec037's), old clipping
    trainer = make_trainer(net, LR, weight_decay=WD, clip_grad=CLIP, fused=multi,
                           schedule=(100, 1000))
    if mode == 'recipe-before':
        return lambda: before_update(trainer, net)

    def update():
        trainer.allreduce_grads()
        clip_global_norm(trainer, [mx.cpu()], CLIP * BATCH)
        trainer.update(BATCH, ignore_stale_grad=True)
    return update


def kernels(repeats, steps):
    """ms per call of MXNet's Adam kernels on one (30522 * 384,) array (MiniLM's embedding)
    and, multi-tensor, on MiniLM's 100 parameter shapes in one launch or one launch each."""
    def timed(fn):
        fn()
        mx.nd.waitall()
        rounds = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            mx.nd.waitall()
            rounds.append((time.perf_counter() - start) / steps * 1000)
        return round(statistics.median(rounds), 2)

    w, g, m, v = (mx.nd.random.uniform(shape=(30522 * 384,)) for _ in range(4))
    r = mx.nd.full((1,), 1 / BATCH)
    kw = dict(lr=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-8)
    out = {
        'adam_update': timed(lambda: mx.nd.adam_update(w, g, m, v, out=w, rescale_grad=1 / BATCH, **kw)),
        'adamw_update': timed(lambda: mx.nd.contrib.adamw_update(w, g, m, v, r, eta=1.0, wd=0.01,
                                                                 out=w, **kw)),
        'multi_adamw_update, 1 tensor': timed(lambda: mx.nd.contrib.multi_adamw_update(
            [w], [g], [m], [v], r, etas=[1.0], lrs=[1e-4], wds=[0.01], out=[w]))}
    net = network(MINILM)
    shapes = [p.shape for p in net.collect_params().values()][:FusedAdam.MAX_TENSORS]
    ws, gs, ms, vs = ([mx.nd.random.uniform(shape=s) for s in shapes] for _ in range(4))
    n, one = len(shapes), [1.0]
    out[f'multi_adamw_update, {n} tensors in one launch'] = timed(
        lambda: mx.nd.contrib.multi_adamw_update(ws, gs, ms, vs, r, etas=one * n, lrs=[1e-4] * n,
                                                 wds=[0.01] * n, out=ws))
    out[f'multi_adamw_update, the same {n} one launch each'] = timed(lambda: [
        mx.nd.contrib.multi_adamw_update([a], [b], [c], [d], r, etas=one, lrs=[1e-4], wds=[0.01],
                                         out=[a]) for a, b, c, d in zip(ws, gs, ms, vs)])
    out[f'adam_update, the same {n} tensors'] = timed(lambda: [
        mx.nd.adam_update(a, b, c, d, out=a, rescale_grad=1 / BATCH, **kw)
        for a, b, c, d in zip(ws, gs, ms, vs)])
    return out


def backward(net, loss, batch):
    tokens, segments, lens, y = batch
    LAZY_ROWS[0] = tokens
    with autograd.record():
        l = loss(net((tokens, segments, lens)), y)
    l.backward()
    return l


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--shapes', nargs='+', default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument('--kernels', action='store_true',
                        help=f'time only the kernels, into {os.path.relpath(KERNELS_OUT, ROOT)}')
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    npx.set_np()
    results = dict(header('bench_recipe.py'), omp_num_threads=gluon_bertft.common.threads.configured,
                   batch=BATCH, width=WIDTH, shapes={})
    if args.kernels:
        results['kernels_ms'] = kernels(args.repeats, args.steps)
        print('kernels, ms per call: ' + ', '.join(f'{k} {v}' for k, v in results['kernels_ms'].items()),
              flush=True)
        write_json(args.out if args.out != OUT else KERNELS_OUT, dict(results, uptime_after=uptime()))
        return
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    modes = ('book', 'book-lazy', 'book-fused', 'recipe-fused', 'recipe-single', 'recipe-before')
    for shape in args.shapes:
        config = SHAPES[shape]
        data = batches(config['vocab_size'])
        nets = {m: network(config) for m in modes}
        updates = {m: updater(m, nets[m]) for m in modes}
        for m in modes:  # compile, create the optimizer states, fill every gradient
            backward(nets[m], loss, data[0])
            updates[m]()
        mx.nd.waitall()
        rounds = {m: [] for m in modes}
        for _ in range(args.repeats):  # optimizer only: the same gradients, updated again
            for m in modes:
                start = time.perf_counter()
                for _ in range(args.steps):
                    fresh(nets[m])
                    updates[m]()
                mx.nd.waitall()
                rounds[m].append((time.perf_counter() - start) / args.steps * 1000)
        steps = {m: [] for m in ('book', 'book-lazy', 'recipe-fused', 'recipe-before')}
        for _ in range(args.repeats):  # whole steps
            for m in steps:
                start = time.perf_counter()
                for i in range(args.steps):
                    backward(nets[m], loss, data[i % len(data)])
                    updates[m]()
                mx.nd.waitall()
                steps[m].append(args.steps * BATCH / (time.perf_counter() - start))
        params = sum(p.data().size for p in nets['book'].collect_params().values())
        results['shapes'][shape] = dict(
            config=config, parameters=int(params),
            optimizer_ms={m: dict(median=round(statistics.median(r), 2), all=[round(x, 2) for x in r])
                          for m, r in rounds.items()},
            step_examples_per_s={m: dict(median=round(statistics.median(r), 1),
                                         all=[round(x, 1) for x in r]) for m, r in steps.items()})
        print(f'{shape} ({params / 1e6:.1f} M parameters): optimizer ms/step ' + ', '.join(
            f'{m} {statistics.median(r):.1f}' for m, r in rounds.items()) + '; whole step examples/s '
            + ', '.join(f'{m} {statistics.median(r):.1f}' for m, r in steps.items()), flush=True)
    results['uptime_after'] = uptime()
    write_json(args.out, results)  # atomic
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
