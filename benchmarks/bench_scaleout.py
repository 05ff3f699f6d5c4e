"""Distributed fine-tuning on this machine, and the communication it needs on a real network.

1. ``throughput``: the ``finetune`` CLI on ``data/snli_sample.jsonl`` (bert.small shapes,
   random weights, max_len 64, global batch 64, 3 epochs) as one plain process, and through
   ``launch`` over ``dist_sync`` (one server) with 1, 2 and 4 workers, all on 127.0.0.1.
   Reported: examples/s of the last epoch (rank 0's examples/s times the number of workers,
   who step in lockstep) and the bytes that crossed the loopback device per optimizer step,
   next to what the parameter count predicts (each worker pushes and pulls every gradient).
   The configurations take turns, ``--repeats`` rounds; the table keeps each one's fastest
   run (the least disturbed on a shared machine) and the JSON every run.
2. ``step``: the compute time of one training step (forward, backward, Adam) on one process
   for bert.small and bert.base shapes with a 20,256-token vocabulary (as
   ``bench_speed.py``), 32 pairs of 32 tokens; the bytes each worker pushes and pulls per
   step; how many such workers one server's 10 Gbit/s link keeps fed.

    PYTHONPATH=. python benchmarks/bench_scaleout.py [--quick] [--out FILE]
"""
import argparse
import datetime
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')
FINETUNE = ['finetune', '--train', SAMPLE, '--pretrained', 'random', '--epochs', '3',
            '--batch-size', '64', '--max-len', '64']
LINK = 10e9 / 8  # 10 Gbit/s in bytes/s, each direction
VOCAB = 20256


def loopback_bytes():
    """Bytes sent through the loopback device so far (each one is also received once)."""
    with open('/proc/net/dev') as f:
        for line in f:
            name, _, counters = line.partition(':')
            if name.strip() == 'lo':
                return int(counters.split()[8])
    raise OSError('no loopback device in /proc/net/dev')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(workers, threads, folder):
    """One fine-tuning run: ``workers=0`` is a plain process. Returns its measurements."""
    out = os.path.join(folder, 'out')
    argv = [sys.executable, '-m', 'gluon_bertft']
    if workers:
        argv += ['launch', '-n', str(workers), '--port', str(free_port()), '--logs',
                 os.path.join(folder, 'logs')] + (['--threads', str(threads)] if threads else [])
        argv += ['--']
    argv += FINETUNE + ['--out', out]
    env = dict(os.environ, PYTHONPATH=ROOT)
    if threads and not workers:
        env['OMP_NUM_THREADS'] = str(threads)
    load, sent, start = os.getloadavg()[0], loopback_bytes(), time.time()
    subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True, timeout=1800)
    wall, sent = time.time() - start, loopback_bytes() - sent
    with open(os.path.join(out, 'history.json')) as f:
        history = json.load(f)
    steps = 3 * batches_per_epoch(max(1, workers))
    return dict(workers=workers, omp_threads=threads, command=shlex.join(argv[1:]),
                examples_per_sec=history['examples_per_sec'][-1] * max(1, workers),
                wall_seconds=wall, load_average_before=load, steps=steps,
                loopback_bytes_per_step=sent / steps,
                test_acc=history['test_acc'][-1])


def batches_per_epoch(workers):
    """Optimizer steps per epoch: the batches of one worker's shard, as ``make_iter`` cuts it."""
    import numpy as onp

    from gluon_bertft.data.batching import BatchIter
    n = (2000 - 200) // workers  # the sample less the 10 % held back for testing
    rows = onp.zeros((n, 1))
    return len(BatchIter((rows, rows, onp.ones(n), onp.zeros(n)), 64 // workers, shuffle=True,
                         num_buckets=8))


def sample_model_parameters():
    """Trainable parameters of the model the throughput runs fine-tune."""
    import mxnet as mx

    from gluon_bertft.data.snli import read_snli
    from gluon_bertft.finetune import split_rows
    from gluon_bertft.models.heads import BERTClassifier
    from gluon_bertft.models.pretrained import load_bert
    train_rows, _ = split_rows(list(zip(*read_snli(SAMPLE))), 0.1, 0)
    train_data = tuple(list(c) for c in zip(*train_rows))
    bert, _, _ = load_bert('random', 'bert.small', [mx.cpu()], 0.1, train_data[0] + train_data[1])
    net = BERTClassifier(bert)
    net.output.initialize()
    return sum(p.data().size for p in net.collect_params().values())


def step_time(preset, steps):
    """Seconds per training step of ``preset`` on one process, and its parameter count."""
    import mxnet as mx
    from mxnet import autograd, gluon, np

    from gluon_bertft.models import pretrained
    from gluon_bertft.models.heads import BERTClassifier
    from gluon_bertft.training.trainer import make_trainer
    net = BERTClassifier(pretrained.build_bert(dict(pretrained.PRESETS[preset],
                                                    vocab_size=VOCAB), dropout=0.1))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    trainer, loss = make_trainer(net, 1e-4), gluon.loss.SoftmaxCrossEntropyLoss()
    rng = mx.np.random
    X = (rng.randint(4, VOCAB, (32, 32)).astype('int32'), np.zeros((32, 32), dtype='int32'),
         np.full((32,), 32.0))
    y = rng.randint(0, 3, (32,))
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        start = time.time()
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(32)
        mx.nd.waitall()
        times.append(time.time() - start)
    params = sum(p.data().size for p in net.collect_params().values())
    return sum(times[2:]) / steps, params


def link_estimate(preset, seconds, params):
    pushed = 4 * params  # float32 gradients, pushed and pulled once per step by every worker
    return dict(preset=preset, vocab=VOCAB, params=params, step_seconds=seconds,
                bytes_pushed_and_pulled_per_worker_step=pushed,
                seconds_to_send_on_10gbit=pushed / LINK,
                workers_per_10gbit_server_link=LINK * seconds / pushed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer runs and steps (a dry run)')
    parser.add_argument('--repeats', type=int, default=2, help='rounds of throughput runs')
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results',
                                                      'scaleout.json'))
    args = parser.parse_args()
    configs = [(0, None), (0, 1), (1, None), (2, None), (2, 1), (4, None), (4, 1)]
    configs = configs[:3] if args.quick else configs
    result = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                  command=shlex.join(['PYTHONPATH=.', 'python', *sys.argv]),
                  nproc=os.cpu_count(), load_average_before=os.getloadavg(),
                  sample_model_params=sample_model_parameters(), throughput=[], step=[])
    for _ in range(args.repeats):
        for workers, threads in configs:
            with tempfile.TemporaryDirectory() as folder:
                row = run(workers, threads, folder)
            row['expected_bytes_per_step'] = 2 * workers * 4 * result['sample_model_params']
            result['throughput'].append(row)
            print(json.dumps(row), flush=True)
    for workers, threads in configs:
        rows = [r for r in result['throughput']
                if (r['workers'], r['omp_threads']) == (workers, threads)]
        best = max(rows, key=lambda r: r['examples_per_sec'])
        print(f'| {workers or "1 plain"} | {threads or "default"} | '
              f'{best["examples_per_sec"]:.0f} | '
              f'{", ".join(str(round(r["examples_per_sec"])) for r in rows)} | '
              f'{best["loopback_bytes_per_step"] / 1e6:.2f} | '
              f'{best["expected_bytes_per_step"] / 1e6:.2f} |', flush=True)
    for preset, steps in (('bert.small', 3 if args.quick else 10),
                          ('bert.base', 1 if args.quick else 3)):
        result['step'].append(link_estimate(preset, *step_time(preset, steps)))
        print(json.dumps(result['step'][-1]), flush=True)
    result['load_average_after'] = os.getloadavg()
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
