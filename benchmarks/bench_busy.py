"""OpenMP wait policy on a busy machine: one training alone, and two at once (issue 15, item 2).

MXNet 1.9 and its OpenBLAS both run on libgomp. Between parallel regions libgomp's idle threads
spin (busy-wait) ``GOMP_SPINCOUNT`` iterations before they sleep: 300,000 by default, none with
``OMP_WAIT_POLICY=PASSIVE``. Alone, spinning saves the wake-up of every small operator; next to
another process with as many threads, the spinning threads take the cores the working ones
need. This benchmark times the package's bert.small training step (``BERTClassifier`` on
``BERTModel``, 2 blocks x 256 hidden, hybridized with static alloc/shape, the book's Adam,
dropout 0.1; random weights and token ids, lengths as SNLI's, 26-40 tokens trimmed to a
multiple of 4, batch 32) in fresh processes, for each setting of ``--settings``:

* ``alone``: one process with one thread per physical core;
* ``beside``: the same, next to one busy single-threaded Python process (another user's work);
* ``two``: two such processes started together, each with the same setting;
* ``two-1thread``: two processes with one thread each (the reference the issue's target uses:
  each of two should keep 80% of this rate).

Each process trains ``--warmup`` untimed steps, then times ``--steps`` steps (at most
``--max-seconds``; examples/s, and its CPU use: process CPU seconds / wall seconds, with the
steps done). ``--mode infer`` times forward passes of the
same network and batches instead (no autograd; the logits copied to the host).
``alone`` runs are alternated with the other settings ``--repeats`` times, medians reported.

    flock /tmp/heavy.lock python benchmarks/bench_busy.py [--settings default 30000 3000 passive]
    flock /tmp/heavy.lock python benchmarks/bench_busy.py --mode infer --modes alone beside two
    flock /tmp/heavy.lock python benchmarks/bench_busy.py --import-order --out benchmarks/results/import_order_speed.json

``--import-order`` instead times the package's own settings (no ``OMP_NUM_THREADS`` given), one
process alone, with ``gluon_bertft`` imported before ``mxnet`` and after it.

Writes ``benchmarks/results/busy_speed.json`` (commit, load before and after, every run).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'busy_speed.json')
BATCH, VOCAB = 32, 20256


def bert_small_step(seed=0, mode='train'):
    """``step(i)``: one bert.small training step on the i-th of 16 fixed random batches (the
    module docstring's network and batches; also ``profile_step.py``'s); ``mode='infer'``: one
    forward pass of that batch instead (no autograd, the logits copied to the host)."""
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, gluon, np, npx

    from gluon_bertft.models import pretrained
    from gluon_bertft.models.heads import BERTClassifier
    npx.set_np()
    mx.random.seed(seed)
    rng = onp.random.RandomState(seed)
    bert = pretrained.build_bert(dict(pretrained.PRESETS['bert.small'], vocab_size=VOCAB), 0.1)
    bert.initialize(mx.init.Xavier())
    net = BERTClassifier(bert, 3)
    net.output.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-4})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    batches = []
    for _ in range(16):
        width = 4 * rng.randint(7, 11)  # 28 ... 40 positions
        lens = rng.randint(width - 3, width + 1, size=BATCH).astype('float32')
        tokens = rng.randint(5, VOCAB, size=(BATCH, width))
        segments = (onp.arange(width)[None, :] > lens[:, None] / 2).astype('int32')
        batches.append((np.array(tokens, dtype='int32'), np.array(segments), np.array(lens),
                        np.array(rng.randint(0, 3, size=BATCH).astype('float32'))))

    def infer(i):
        tokens, segments, lens, _ = batches[i % len(batches)]
        net((tokens, segments, lens)).asnumpy()

    def step(i):
        tokens, segments, lens, y = batches[i % len(batches)]
        with autograd.record():
            l = loss(net((tokens, segments, lens)), y)
        l.backward()
        trainer.step(BATCH)
        return float(l.sum())  # one host sync per step, as the package's loop checks the loss
    return infer if mode == 'infer' else step


def child(steps, warmup, seed, mxnet_first=False, mode='train', max_seconds=None):
    """Train bert.small steps in this process; print examples/s (the thread settings are the
    environment's: this runs in a fresh interpreter). ``mxnet_first``: ``import mxnet`` before
    ``gluon_bertft``, as a notebook that starts with ``from mxnet import np`` does."""
    if mxnet_first:
        import mxnet  # noqa: F401
    import gluon_bertft  # noqa: F401 (thread set-up; after mxnet with mxnet_first)
    step = bert_small_step(seed, mode)
    for i in range(warmup):
        step(i)
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < steps and (max_seconds is None or time.perf_counter() - start < max_seconds):
        step(done)
        done += 1
    wall = time.perf_counter() - start
    print(json.dumps(dict(examples_per_s=done * BATCH / wall, steps=done,
                          cpu_per_wall=(time.process_time() - cpu) / wall,
                          configured_threads=gluon_bertft.common.threads.configured)))


def environment(setting, threads):
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY', 'GLUON_BERTFT_THREADS',
                        'GLUON_BERTFT_SPIN')}
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    if setting == 'passive':
        env['OMP_WAIT_POLICY'] = 'PASSIVE'
    elif setting.isdigit():
        env['GOMP_SPINCOUNT'] = setting
    elif setting == 'default':  # libgomp's own (gluon_bertft would set its GOMP_SPINCOUNT)
        env['GLUON_BERTFT_SPIN'] = 'libgomp'
    elif setting != 'package':  # 'package': whatever gluon_bertft sets by itself
        raise SystemExit(f'unknown setting {setting!r}')
    return env


# the "other work" of a shared machine: one single-threaded Python loop (as a tokenizer, a test
# run or another user's script would be), started before the timed process and ended after it
BURNER = 'import time\nend = time.time() + 3600\nwhile time.time() < end: pass'


def run(setting, copies, threads, args, mxnet_first=False, beside=False):
    """``(examples/s, CPU/wall)`` of each of ``copies`` processes started together; ``beside``:
    with one busy single-threaded process running alongside."""
    burner = subprocess.Popen([sys.executable, '-c', BURNER]) if beside else None
    try:
        procs = [subprocess.Popen([sys.executable, __file__, '--child', '--steps', str(args.steps),
                                   '--warmup', str(args.warmup), '--seed', str(k), '--mode', args.mode]
                                  + (['--max-seconds', str(args.max_seconds)] if args.max_seconds else [])
                                  + (['--mxnet-first'] if mxnet_first else []),
                                  env=environment(setting, threads), stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) for k in range(copies)]
        out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return ([round(o['examples_per_s'], 1) for o in out],
            [(round(o['cpu_per_wall'], 2), o['steps']) for o in out])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--settings', nargs='+', default=['default', 'package', '30000', '3000', 'passive'],
                        help="'default' (libgomp's), 'package' (gluon_bertft's), a GOMP_SPINCOUNT, "
                             "or 'passive'")
    parser.add_argument('--mode', choices=('train', 'infer'), default='train',
                        help='training steps, or forward passes (inference)')
    parser.add_argument('--modes', nargs='+', default=['alone', 'two'],
                        choices=('alone', 'beside', 'two'),
                        help="alone; beside one busy single-threaded process; two at once")
    parser.add_argument('--no-1thread', action='store_true',
                        help='leave out the two-processes-of-one-thread reference')
    parser.add_argument('--steps', type=int, default=150)
    parser.add_argument('--max-seconds', type=float,
                        help='stop timing a process after this long (the rate of the steps done)')
    parser.add_argument('--warmup', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--import-order', action='store_true',
                        help="instead: the package's settings, alone, with gluon_bertft imported "
                             "first and with mxnet imported first (no OMP_NUM_THREADS given)")
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--mxnet-first', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    if args.child:
        return child(args.steps, args.warmup, args.seed, args.mxnet_first, args.mode,
                     args.max_seconds)
    sys.path.insert(0, ROOT)
    from gluon_bertft.common.storage import write_json
    from gluon_bertft.common.threads import physical_cores
    cores = physical_cores()
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results = dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                   command=' '.join(['python', 'benchmarks/bench_busy.py'] + sys.argv[1:]),
                   commit=git('rev-parse', '--short', 'HEAD'), cores=cores, batch_size=BATCH,
                   mode=args.mode, steps=args.steps, loadavg_before=os.getloadavg(), runs=[])
    for r in range(args.repeats if args.import_order else 0):
        for mxnet_first in (False, True):
            rates, cpu = run('package', 1, None, args, mxnet_first)
            mode = 'mxnet imported first' if mxnet_first else 'gluon_bertft imported first'
            results['runs'].append(dict(setting='package', mode=mode, repeat=r, rates=rates,
                                        cpu_per_wall=cpu))
            print(f'{mode:>28}: {rates}', flush=True)
    for r in range(0 if args.import_order else args.repeats):
        for setting in args.settings:
            for mode in args.modes:
                rates, cpu = run(setting, 2 if mode == 'two' else 1, cores, args,
                                 beside=mode == 'beside')
                results['runs'].append(dict(setting=setting, mode=mode, repeat=r, rates=rates,
                                            cpu_per_wall=cpu))
                print(f'{setting:>8} {mode:>6}: {rates} (CPU/wall {cpu}) load '
                      f'{os.getloadavg()[0]:.2f}', flush=True)
        if not args.no_1thread:  # libgomp's spin: one thread each does not spin idle
            rates, cpu = run('default', 2, 1, args)
            results['runs'].append(dict(setting='default', mode='two-1thread', repeat=r,
                                        rates=rates, cpu_per_wall=cpu))
            print(f'{"1 thread":>8} {"two":>6}: {rates} (CPU/wall {cpu})', flush=True)
    summary = {}
    for run_ in results['runs']:
        key = f'{run_["setting"]} {run_["mode"]}'
        summary.setdefault(key, []).extend(run_['rates'])
    results['median_examples_per_s'] = {k: statistics.median(v) for k, v in summary.items()}
    results['loadavg_after'] = os.getloadavg()
    for k, v in results['median_examples_per_s'].items():
        print(f'{k:>24}: {v:8.1f} examples/s (median)')
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out, results)  # atomic
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
