"""Where a bert.small training step spends its time, operator by operator (MXNet's profiler).

The step is ``benchmarks/bench_busy.py``'s (``bert_small_step``) (``BERTClassifier`` on ``BERTModel`` bert.small,
hybridized with static alloc/shape, the book's Adam, batch 32 of 28-40 tokens, one host sync per
step). After ``--warmup`` untimed steps, ``--steps`` steps are timed without the profiler, then
run again with MXNet's profiler aggregating every operator (``profile_all``), whose table is
written with the wall-clock step time and the share of it each operator group takes.

    flock /tmp/heavy.lock python benchmarks/profile_step.py [--steps 100]

Writes ``benchmarks/results/profile_bert_small.txt`` (the profiler's aggregate table) and
``benchmarks/results/profile_bert_small.json`` (step time, per-operator totals, groups).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import gluon_bertft  # noqa: F401 (first: thread set-up)
import mxnet as mx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_busy import BATCH, bert_small_step  # noqa: E402 (the same network and batches)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'profile_bert_small')
GROUPS = {  # operator name patterns -> what they do
    'matrix products (FC, batch_dot)': r'FullyConnected|batch_dot|_npi_matmul|dot',
    'optimizer (adam_update)': r'adam|Adam',
    'embedding (forward, backward)': r'Embedding|take',
    'softmax, layer norm, dropout, GELU/ReLU': r'softmax|LayerNorm|Dropout|Activation|relu|gelu|tanh',
    'elementwise, reshapes, copies': r'.',
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--warmup', type=int, default=20)
    parser.add_argument('--out', default=OUT)
    parser.add_argument('--profile', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    step = bert_small_step(0)

    def steps(n):
        start = time.perf_counter()
        for i in range(n):
            step(i)
        return (time.perf_counter() - start) / n

    steps(args.warmup)
    step_s = steps(args.steps)
    if not args.profile:
        env = dict(os.environ, MXNET_EXEC_BULK_EXEC_TRAIN='0', MXNET_EXEC_BULK_EXEC_INFERENCE='0')
        subprocess.run([sys.executable, __file__, '--profile', '--steps', str(args.steps),
                        '--warmup', str(args.warmup), '--out', args.out], env=env, check=True)
        result = json.load(open(args.out + '.json', encoding='utf-8'))
        result.update(bulked_step_ms=step_s * 1e3, examples_per_s=BATCH / step_s,
                      command=' '.join(['python', 'benchmarks/profile_step.py'] + sys.argv[1:]))
        with open(args.out + '.json', 'w', encoding='utf-8') as f:
            json.dump(result, f, indent=1)
        print(f'bert.small step {step_s * 1e3:.1f} ms ({BATCH / step_s:.0f} examples/s) with the '
              f'engine\'s bulk execution')
        return
    trace = os.path.join(tempfile.mkdtemp(), 'trace.json')  # ~85 MB of events: only the table is kept
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=trace)
    mx.profiler.set_state('run')
    profiled_s = steps(args.steps)
    mx.profiler.set_state('stop')
    table = mx.profiler.dumps(reset=True)
    shutil.rmtree(os.path.dirname(trace), ignore_errors=True)
    ops, section = {}, None
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 1 and not line.startswith(('=', '-')):
            section = parts[0]  # "operator", "MXNET_C_API", ...
        # "name  count  total(ms)  min  max  avg" rows of the operator section
        elif section == 'operator' and len(parts) >= 6 and parts[-5].isdigit():
            ops[' '.join(parts[:-5])] = ops.get(' '.join(parts[:-5]), 0.0) + float(parts[-4])
    groups = {}
    for name, ms in ops.items():
        group = next(g for g, pattern in GROUPS.items() if re.search(pattern, name))
        groups[group] = groups.get(group, 0.0) + ms / args.steps
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = dict(command=' '.join(['python', 'benchmarks/profile_step.py'] + sys.argv[1:]),
                  commit=git('rev-parse', '--short', 'HEAD'), omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                  loadavg=os.getloadavg(), unbulked_step_ms=step_s * 1e3,
                  profiled_step_ms=profiled_s * 1e3, operator_ms_total=sum(ops.values()) / args.steps,
                  operator_ms_per_step=dict(sorted(((k, v / args.steps) for k, v in ops.items()),
                                                   key=lambda kv: -kv[1])),
                  group_ms_per_step=dict(sorted(groups.items(), key=lambda kv: -kv[1])))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + '.txt', 'w', encoding='utf-8') as f:
        f.write(table)
    with open(args.out + '.json', 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    print(f'without bulk execution: step {step_s * 1e3:.1f} ms; profiled {profiled_s * 1e3:.1f} ms, of '
          f'which operators {result["operator_ms_total"]:.1f} ms')
    for group, ms in result['group_ms_per_step'].items():
        print(f'  {group:42s} {ms:7.2f} ms/step')
    for name, ms in list(result['operator_ms_per_step'].items())[:15]:
        print(f'    {name:40s} {ms:7.2f} ms/step')


if __name__ == '__main__':
    main()
