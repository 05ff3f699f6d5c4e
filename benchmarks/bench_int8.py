"""INT8 against fp32 inference (``quantize``): examples/s on the same batches, and the task metric.

A fine-tuned model folder (default: the reference MiniLM on 4,000 SST-2 sentences) runs on its
task's dev file (default SST-2's 872 sentences) as ``predict``/``evaluate`` run it: fp32 is
``load_model`` + the fast inference copy (fused attention + oneDNN), each INT8 variant a graph
folder that ``quantize`` wrote, loaded by ``load_model`` (``SymbolBlock.imports``). Batches of 32,
length-sorted (``make_iter(..., sort=True)``), the same for every variant.

After one untimed pass of each variant (which also gives its metric, ``task.score``, and its
argmax agreement with fp32), ``--repeats`` rounds alternate at the batch level: every batch goes
through every variant in turn (the first rotating), each call timed alone. Reported: the median
examples/s, every repeat, CPU use (process CPU seconds / wall seconds) and the load (uptime)
before and after. Time it alone on the machine:

    flock /tmp/heavy.lock python benchmarks/bench_int8.py --int8 naive=DIR entropy=DIR
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # this checkout's package, then provenance.py
import gluon_bertft  # noqa: E402,F401 (before mxnet: sets the OpenMP threads)
import mxnet as mx  # noqa: E402
import numpy as onp  # noqa: E402
from provenance import ROOT, header, uptime  # noqa: E402

from gluon_bertft.common.storage import write_json  # noqa: E402
from gluon_bertft.data.batching import make_iter  # noqa: E402
from gluon_bertft.inference.fast import inference_net  # noqa: E402
from gluon_bertft.inference.predict import load_model, read_with  # noqa: E402
from gluon_bertft.training.evaluate import predict_outputs  # noqa: E402

MODELS = '/work/models'
SST2_DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'sst2', 'dev.tsv')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'int8_speed.json')
BATCH = 32


def flat(y):
    """A batch's outputs as one host array (QA's two score arrays side by side)."""
    if isinstance(y, (tuple, list)):
        return onp.concatenate([o.asnumpy() for o in y], axis=-1)
    return y.asnumpy()


def timed_round(nets, batches, examples):
    """Every batch through every variant in turn (the first rotating), each call timed alone:
    per variant its examples/s and CPU use over the round."""
    names = list(nets)
    wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for i, (features, _) in enumerate(batches):
        for name in names[i % len(names):] + names[:i % len(names)]:
            mx.nd.waitall()
            w, c = time.perf_counter(), time.process_time()
            flat(nets[name](features))
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
    return {name: dict(examples_per_sec=examples / wall[name], cpu_per_wall=cpu[name] / wall[name])
            for name in names}


def agreement(outputs, reference):
    """Share of examples (classifiers) or positions whose argmax is the fp32 one's."""
    same = [onp.asarray(o).argmax(-1) == onp.asarray(r).argmax(-1)
            for o, r in zip(outputs, reference)]
    return float(onp.mean(onp.concatenate([onp.ravel(s) for s in same])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=os.path.join(MODELS, 'sst2_minilm', 'model'))
    parser.add_argument('--data', default=SST2_DEV)
    parser.add_argument('--int8', nargs='+', required=True, metavar='NAME=DIR',
                        help='INT8 folders written by quantize, each with a name')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    devices = [mx.cpu()]
    net, vocab, task = load_model(args.model, devices)
    nets = {'fp32': inference_net(net)}
    for item in args.int8:
        name, path = item.split('=', 1)
        nets[f'int8 {name}'] = load_model(path, devices)[0]
    rows = read_with(task, args.data)
    dataset = task.encode(rows, vocab, log=lambda *a: None)
    batches = make_iter(dataset, BATCH, False, sort=True)
    result = dict(header('bench_int8.py'), model=args.model, data=args.data,
                  examples=len(rows), batch_size=BATCH, variants={})
    outputs = {}
    for name, variant in nets.items():  # untimed pass: the metric, and every shape compiled
        outputs[name] = predict_outputs(variant, batches, devices, progress=False)
        result['variants'][name] = dict(metrics=task.score(outputs[name], rows, dataset),
                                        agreement_with_fp32=agreement(outputs[name], outputs['fp32']))
    runs = {name: [] for name in nets}
    for _ in range(args.repeats):
        for name, timing in timed_round(nets, batches, len(rows)).items():
            runs[name].append(timing)
    for name, timings in runs.items():
        entry = result['variants'][name]
        entry.update(median_examples_per_sec=statistics.median(t['examples_per_sec'] for t in timings),
                     median_cpu_per_wall=statistics.median(t['cpu_per_wall'] for t in timings),
                     repeats=timings)
        rates = ', '.join(f'{t["examples_per_sec"]:.1f}' for t in timings)
        metric = ', '.join(f'{k} {v:.4f}' for k, v in entry['metrics'].items()
                           if isinstance(v, float) and not k.startswith('f1['))
        print(f'{name}: {entry["median_examples_per_sec"]:.1f} examples/s (repeats {rates}); '
              f'{metric}; agreement with fp32 {entry["agreement_with_fp32"]:.4f}', flush=True)
    result['uptime_after'] = uptime()
    write_json(args.out, result)
    print(f'wrote {args.out}\nbefore: {result["uptime_before"]}\nafter:  {result["uptime_after"]}')


if __name__ == '__main__':
    main()
