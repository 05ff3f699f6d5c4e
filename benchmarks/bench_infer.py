"""Fast fp32 inference (``gluon_bertft.inference.fast``): examples/s of the plain network
against its fused-attention, oneDNN and fused + oneDNN copies, on the same batches.

The batches are ``predict --data``'s and ``evaluate``'s: SST-2's 872 dev sentences
(``../shared/data/sst2/dev.tsv``; ``data/snli_sample.jsonl``'s pairs when absent) encoded
with the installed MiniLM's WordPiece, ``max_len`` 128, batches of 32 from ``make_iter(...,
sort=True)`` (length-sorted, each trimmed to its longest example). Each pass is
``predict_outputs`` over all batches (the outputs copied to the host, the order restored).

The copies are hybridized with ``static_alloc`` and ``static_shape`` (MXNet plans memory
once per batch shape); the variant ``both, static_alloc only`` re-hybridizes the encoder
without ``static_shape``, the first version's setting.

Shapes: ``minilm``, the installed all-MiniLM-L6-v2 (its weights; a random 2-class head);
``bert.small``, the book's shape (2 blocks, 256 hidden, 4 heads, FFN 512; ReLU) with random
weights and an embedding of 30,522 rows (the WordPiece ids). The plain network is
``load_model``'s: the head hybridized with ``static_alloc``. The copies are
``inference_net(net, fused_attention, onednn)``; ``setup_seconds`` is the time to make a copy
plus its first pass over every batch shape (partitioning and compiling), against the plain
network's first pass.

After one untimed pass of each variant, ``--repeats`` rounds each time every variant once:
with ``--interleave batch`` (the default) every batch goes through every variant in turn
(the first one rotating), each call timed alone, so that a change of the machine's load hits
all variants alike; with ``--interleave pass`` each variant makes a whole ``predict_outputs``
pass in turn (plain, fused, ..., plain, ...). Reported: the median examples/s, every repeat,
CPU use (process CPU seconds / wall seconds), and the largest output difference from the plain
network and the argmax agreement with it. Run it alone on the machine:

    flock /tmp/heavy.lock python benchmarks/bench_infer.py [--repeats 5]
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
from gluon_bertft.models import pretrained  # noqa: E402
from gluon_bertft.models.build import PRESETS, build_bert  # noqa: E402
from gluon_bertft.tasks import make_task  # noqa: E402
from gluon_bertft.training.devices import set_seed  # noqa: E402
from gluon_bertft.training.evaluate import predict_outputs  # noqa: E402

SST2_DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'sst2', 'dev.tsv')
SNLI_SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'infer_speed.json')
BATCH, MAX_LEN = 32, 128
VARIANTS = {'plain': None, 'fused': (True, False), 'onednn': (False, True), 'both': (True, True),
            'both, static_alloc only': (True, True, False)}


def dataset_of(vocab):
    """``(batches, description)``: the dev sentences encoded and batched as ``predict`` does."""
    task, path = (make_task('classify', MAX_LEN), SST2_DEV) if os.path.isfile(SST2_DEV) \
        else (make_task('snli', MAX_LEN), SNLI_SAMPLE)
    rows = task.read(path)
    task.fit(rows)
    dataset = task.encode(rows, vocab, log=lambda *a: None)
    batches = make_iter(dataset, BATCH, False, sort=True)
    widths = [int(f[0].shape[1]) for f, _ in batches]
    return task, batches, dict(data=os.path.relpath(path, os.path.dirname(ROOT)),
                               examples=len(rows), batches=len(widths),
                               mean_width=sum(widths) / len(widths))


def network(shape, devices):
    """``(net, task, batches, description)`` of ``shape``, hybridized as ``load_model`` does."""
    set_seed(0)
    bert, vocab, _ = pretrained.load_bert('minilm', None, devices, 0.0)
    if shape == 'bert.small':
        bert = build_bert(dict(PRESETS['bert.small'], vocab_size=len(vocab)), 0.0)
        bert.initialize(mx.init.Xavier(), ctx=devices)
    task, batches, described = dataset_of(vocab)
    net = task.head(bert)
    net.output.initialize(ctx=devices)
    net.hybridize(static_alloc=True)
    return net, batches, described


def copy_of(net, fused, onednn, static_shape=True):
    """``inference_net(net, fused, onednn)``; without ``static_shape`` its encoder
    re-hybridized with ``static_alloc`` only (the oneDNN backend kept), as before 2026-12-02."""
    fast = inference_net(net, fused, onednn)
    if not static_shape:
        fast.encoder.hybridize(True, backend='MKLDNN' if onednn else None, static_alloc=True)
    return fast


def one_pass(net, batches, devices):
    """``(outputs, wall seconds, CPU seconds)`` of one ``predict_outputs`` pass."""
    mx.nd.waitall()
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = predict_outputs(net, batches, devices, progress=False)
    return onp.stack(outputs), time.perf_counter() - wall, time.process_time() - cpu


def batch_round(nets, batches, examples):
    """One round alternating at the batch level: every batch through every variant in turn
    (the first variant rotating from batch to batch), each call timed alone; per variant its
    examples/s over the round, CPU use and its outputs' largest difference from plain's."""
    names = list(nets)
    wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    diff, agree = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    for i, (features, _) in enumerate(batches):
        outs = {}
        for name in names[i % len(names):] + names[:i % len(names)]:
            mx.nd.waitall()
            w, c = time.perf_counter(), time.process_time()
            outs[name] = nets[name](features).asnumpy()
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
        for name in names:
            diff[name] = max(diff[name], float(onp.abs(outs[name] - outs['plain']).max()))
            agree[name] += int((outs[name].argmax(1) == outs['plain'].argmax(1)).sum())
    return {name: dict(examples_per_sec=examples / wall[name], cpu_per_wall=cpu[name] / wall[name],
                       max_abs_diff=diff[name], argmax_agreement=agree[name] / examples)
            for name in names}


def pass_round(nets, batches, examples, devices, reference):
    """One round alternating at the pass level: each variant's whole ``predict_outputs`` pass."""
    result = {}
    for name, net in nets.items():
        out, wall, cpu = one_pass(net, batches, devices)
        result[name] = dict(examples_per_sec=examples / wall, cpu_per_wall=cpu / wall,
                            max_abs_diff=float(onp.abs(out - reference).max()),
                            argmax_agreement=float((out.argmax(1) == reference.argmax(1)).mean()))
    return result


def bench(shape, repeats, devices, interleave):
    net, batches, described = network(shape, devices)
    nets, setup, reference = {}, {}, None
    for name, switches in VARIANTS.items():  # make each copy, then its untimed first pass
        start = time.perf_counter()
        nets[name] = net if switches is None else copy_of(net, *switches)
        out, _, _ = one_pass(nets[name], batches, devices)
        setup[name] = time.perf_counter() - start
        reference = out if reference is None else reference
    runs = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        timed = batch_round(nets, batches, described['examples']) if interleave == 'batch' \
            else pass_round(nets, batches, described['examples'], devices, reference)
        for name, timing in timed.items():
            runs[name].append(timing)
    result = dict(described, interleave=interleave, variants={})
    for name, timings in runs.items():
        rate = statistics.median(t['examples_per_sec'] for t in timings)
        result['variants'][name] = dict(
            median_examples_per_sec=rate, setup_seconds=setup[name],
            median_cpu_per_wall=statistics.median(t['cpu_per_wall'] for t in timings),
            max_abs_diff=max(t['max_abs_diff'] for t in timings),
            argmax_agreement=min(t['argmax_agreement'] for t in timings), repeats=timings)
        rates = ', '.join(f'{t["examples_per_sec"]:.1f}' for t in timings)
        print(f'{shape} {name}: {rate:.1f} examples/s (repeats {rates}), setup '
              f'{setup[name]:.2f} s, max |diff| {result["variants"][name]["max_abs_diff"]:.2e}',
              flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds (>= 3)')
    parser.add_argument('--shapes', nargs='*', default=['minilm', 'bert.small'],
                        choices=['minilm', 'bert.small'])
    parser.add_argument('--interleave', choices=['pass', 'batch'], default='batch',
                        help='alternate the variants pass by pass, or batch by batch (fairer '
                             'on a machine whose load changes within seconds)')
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    devices = [mx.cpu()]
    results = dict(header('bench_infer.py'), mxnet=mx.__version__, batch_size=BATCH,
                   max_len=MAX_LEN, omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                   gomp_spincount=os.environ.get('GOMP_SPINCOUNT'), results={})
    for shape in args.shapes:
        results['results'][shape] = bench(shape, args.repeats, devices, args.interleave)
    results['uptime_after'] = uptime()
    write_json(args.out, results)  # the package's atomic writer
    print(f'wrote {args.out}\nbefore: {results["uptime_before"]}\nafter:  {results["uptime_after"]}')


if __name__ == '__main__':
    main()
