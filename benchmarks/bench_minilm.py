"""MiniLM (all-MiniLM-L6-v2) fine-tuning and inference examples/s on identical batches.

The batches are made as ``finetune`` makes them: the model's WordPiece encoding of real data
(SST-2 train.tsv sentences; SNLI dev pairs), ``max_len`` 128, batches of 32 from
``make_iter(..., train_mode=True)`` (32 length buckets, each batch trimmed to its
longest example rounded up to a multiple of 4). The network is ``finetune``'s: the task head on
the loaded MiniLM, hybridized with static alloc/shape, dropout 0.1.

* fine-tuning: forward + backward + one optimizer step per batch with BERT's recipe as
  ``finetune --warmup 0.1 --weight-decay 0.01 --clip-grad 1.0`` runs it (AdamW, linear
  schedule, global-norm clipping: ``allreduce_grads``, clip, ``update``);
* inference: ``autograd``-free forward of the same batches (``predict_outputs``'s work:
  the outputs copied to the host).

Each timed pass runs over the same ``--batches`` batches after an untimed pass over them all,
so that every batch shape is compiled before timing. The seconds include every host sync the
package's loop has (one per step here, since the loss is read to check it is finite).

    flock /tmp/heavy.lock python benchmarks/bench_minilm.py [--batches 40] [--repeats 3]

Writes ``benchmarks/results/minilm_speed.json`` with the commit (that of a snapshot made by
``experiments/minilm_vs_random.py`` when ``$PYTHONPATH`` points at one, else the checkout's
HEAD), the package's sha1, the machine's load before and after, and per dataset the median
(and every) repeat.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
import mxnet as mx
import numpy as onp
from mxnet import autograd, npx

from gluon_bertft.data.batching import make_iter
from gluon_bertft.models import pretrained
from gluon_bertft.tasks import make_task
from gluon_bertft.training.devices import set_seed
from gluon_bertft.training.trainer import clip_global_norm, make_trainer

npx.set_np()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'minilm_speed.json')
DATA = {'sst2': ('classify', os.path.join(SHARED, 'sst2', 'train.tsv')),
        'snli': ('snli', os.path.join(SHARED, 'snli', 'snli_1.0_dev.jsonl'))}
BATCH, MAX_LEN, LR, DROPOUT = 32, 128, 5e-5, 0.1


def package_info():
    folder = os.path.dirname(gluon_bertft.__file__)
    # the digest experiments/minilm_vs_random.py records, so the two can be matched
    sys.path.insert(0, os.path.join(ROOT, 'experiments'))
    from minilm_vs_random import file_sha1s
    _, package_sha1 = file_sha1s(os.path.dirname(folder))
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git('rev-parse', '--short', 'HEAD')
    # a snapshot made by experiments/minilm_vs_random.py (git archive COMMIT) names its commit
    parent = os.path.basename(os.path.dirname(folder))
    snapshot = os.path.basename(os.path.dirname(os.path.dirname(folder))) == 'code'
    return dict(commit=parent if snapshot else head, package=os.path.relpath(folder, ROOT),
                package_sha1=package_sha1, repo_head=head,
                checkout_package_dirty=None if snapshot else
                bool(git('status', '--porcelain', 'gluon_bertft')))


def batches_of(name, num_batches, vocab):
    task_name, path = DATA[name]
    task = make_task(task_name, MAX_LEN)
    rows = task.read(path)[:num_batches * BATCH * 4]  # several buckets' worth of examples
    task.fit(rows)
    dataset = task.encode(rows, vocab, train=True, log=lambda *a: None)
    it = make_iter(dataset, BATCH, True, seed=0)
    batches = [b for _, b in zip(range(num_batches), it)]
    widths = [int(b[0][0].shape[1]) for b in batches]
    real = sum(float(b[0][2].sum()) for b in batches)
    return task, batches, dict(examples=sum(int(b[0][0].shape[0]) for b in batches),
                               batches=len(batches), widths=sorted(set(widths)),
                               mean_width=sum(widths) / len(widths),
                               real_token_share=real / sum(int(b[0][0].size) for b in batches))


def timed(fn, batches):
    mx.nd.waitall()
    start = time.perf_counter()
    cpu = time.process_time()
    n = 0
    for b in batches:
        n += fn(b)
    mx.nd.waitall()
    wall = time.perf_counter() - start
    return dict(examples_per_sec=n / wall, seconds=wall, cpu_per_wall=(time.process_time() - cpu) / wall)


def bench(name, args, devices):
    set_seed(0)
    bert, vocab, _ = pretrained.load_bert('minilm', None, devices, DROPOUT)
    task, batches, shape = batches_of(name, args.batches, vocab)
    net = task.head(bert)
    net.output.initialize(ctx=devices)
    net.hybridize(static_alloc=True, static_shape=True)
    total = args.batches * (args.repeats + 1)
    trainer = make_trainer(net, LR, weight_decay=0.01, clip_grad=1.0,
                           schedule=(int(0.1 * total), total))
    loss_fn = task.loss

    def train_step(batch):
        (X, y) = batch
        with autograd.record():
            loss = loss_fn(net(X), y)
        loss.backward()
        n = int(X[0].shape[0])
        trainer.allreduce_grads()
        clip_global_norm(trainer, devices, 1.0 * n)
        trainer.update(n, ignore_stale_grad=True)
        if not onp.isfinite(float(loss.mean())):
            raise RuntimeError('loss is not finite')
        return n

    def infer(batch):
        (X, _) = batch
        out = net(X)
        out.asnumpy()
        return int(X[0].shape[0])

    result = dict(shape)
    for mode, fn in (('finetune', train_step), ('inference', infer)):
        fn_timings = []
        for b in batches:  # untimed: compile every shape
            fn(b)
        for _ in range(args.repeats):
            fn_timings.append(timed(fn, batches))
        rates = [t['examples_per_sec'] for t in fn_timings]
        result[mode] = dict(median_examples_per_sec=statistics.median(rates), repeats=fn_timings)
        print(f'{name} {mode}: {statistics.median(rates):.1f} examples/s (repeats '
              f'{", ".join(f"{r:.1f}" for r in rates)}) over {shape["batches"]} batches of '
              f'{BATCH}, mean width {shape["mean_width"]:.1f} tokens', flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batches', type=int, default=40, help='batches per timed pass')
    parser.add_argument('--repeats', type=int, default=3, help='timed passes per mode')
    parser.add_argument('--data', nargs='*', default=list(DATA), choices=list(DATA))
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    devices = [mx.cpu()]
    uptime = lambda: subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    results = dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                   command=' '.join(['python', 'benchmarks/bench_minilm.py'] + sys.argv[1:]),
                   **package_info(), mxnet=mx.__version__, python=platform.python_version(),
                   processor=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                   omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                   batch_size=BATCH, max_len=MAX_LEN, dropout=DROPOUT,
                   recipe='AdamW lr 5e-5, warmup 0.1, weight decay 0.01, clip 1.0',
                   uptime_before=uptime(), loadavg_before=os.getloadavg(), results={})
    for name in args.data:
        results['results'][name] = bench(name, args, devices)
    results.update(uptime_after=uptime(), loadavg_after=os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1)
    print(f'wrote {args.out}; load {results["loadavg_before"]} -> {results["loadavg_after"]}')


if __name__ == '__main__':
    main()
