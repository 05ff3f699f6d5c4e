"""Teacher against students (docs/distillation.md): inference examples/s on the same batches,
parameters, file size and the test score of each saved model folder.

Every model runs the package's default inference path (``evaluate``'s and ``predict --data``'s:
``load_model`` then ``inference_net``, fused attention and oneDNN on) over the same batch
file: ``--data`` (SST-2's 872 dev sentences) encoded with the teacher's tokenizer (which every
student shares), batches of 32 from ``make_iter(..., sort=True)``. After one untimed pass of
each model, ``--repeats`` rounds alternate the models batch by batch (the first one rotating),
each call timed alone, so that a change of the machine's load hits every model alike; the
median examples/s of the rounds is reported with every round, and the load before and after.
Run it alone on the machine:

    flock /tmp/heavy.lock python benchmarks/bench_distill.py --models TEACHER STUDENT... \
        [--names ...] [--repeats 5]
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
from provenance import ROOT, header, uptime  # noqa: E402

from gluon_bertft.common import storage  # noqa: E402
from gluon_bertft.data.batching import make_iter  # noqa: E402
from gluon_bertft.inference.fast import inference_net  # noqa: E402
from gluon_bertft.inference.predict import load_model  # noqa: E402

SST2_DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'sst2', 'dev.tsv')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'distill_speed.json')
BATCH = 32


def describe(path, net):
    """Parameters, file size and the run's test metrics of a model folder."""
    params = sum(p.data().size for p in net.collect_params().values())
    result = os.path.join(os.path.dirname(path.rstrip('/')), 'result.json')
    test = storage.read_json(result).get('test') if os.path.isfile(result) else None
    return dict(path=path, num_blks=len(net.encoder.blks), parameters=int(params),
                file_bytes=os.path.getsize(storage.params_file(path)), test=test)


def bench(models, names, data, repeats):
    devices = [mx.cpu()]
    nets, info, batches = {}, {}, None
    for name, path in zip(names, models):
        net, vocab, task = load_model(path, devices)
        info[name] = describe(path, net)
        if batches is None:  # the teacher's tokenizer: every student shares it
            rows = task.read(data)
            batches = list(make_iter(task.encode(rows, vocab, log=lambda *a: None), BATCH, False,
                                     sort=True))
            examples = len(rows)
        nets[name] = inference_net(net)
        for features, _ in batches:  # the untimed first pass: partitioning, compiling
            nets[name](features).asnumpy()
    rounds = {name: [] for name in names}
    for _ in range(repeats):
        wall = dict.fromkeys(names, 0.0)
        for i, (features, _) in enumerate(batches):
            for name in names[i % len(names):] + names[:i % len(names)]:
                mx.nd.waitall()
                start = time.perf_counter()
                nets[name](features).asnumpy()
                wall[name] += time.perf_counter() - start
        for name in names:
            rounds[name].append(examples / wall[name])
    first = names[0]
    for name in names:
        rate = statistics.median(rounds[name])
        info[name].update(median_examples_per_sec=rate, rounds=rounds[name],
                          speedup=rate / statistics.median(rounds[first]))
        print(f'{name}: {rate:.1f} examples/s (rounds {", ".join(f"{r:.1f}" for r in rounds[name])}),'
              f' x{info[name]["speedup"]:.2f}, {info[name]["parameters"]:,} parameters, '
              f'{info[name]["file_bytes"] / 2**20:.1f} MiB', flush=True)
    return dict(data=data, examples=examples, batches=len(batches), batch_size=BATCH,
                models=info)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', required=True,
                        help='model folders, the teacher first')
    parser.add_argument('--names', nargs='*', help='their names in the output (default: paths)')
    parser.add_argument('--data', default=SST2_DEV)
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds (>= 3)')
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    names = args.names or args.models
    results = dict(header('bench_distill.py'), mxnet=mx.__version__,
                   omp_num_threads=os.environ.get('OMP_NUM_THREADS'))
    results.update(bench(args.models, names, args.data, args.repeats))
    results['uptime_after'] = uptime()
    storage.write_json(args.out, results)
    print(f'wrote {args.out}\nbefore: {results["uptime_before"]}\nafter:  {results["uptime_after"]}')


if __name__ == '__main__':
    main()
