"""The book's §16.7 fine-tuning path against gluon_bertft's fast path, timed on this machine.

Both paths run bert.small shapes (2 blocks, 256 hidden, 4 heads, 512 FFN, 512 positions,
dropout 0.1) with random weights and a 20,256-token vocabulary (the SNLI dev tokens padded
with filler tokens), on real SNLI dev pairs:

* reference: ``d2l.BERTModel`` + the book's ``BERTClassifier`` (not hybridized), pairs padded
  to 128, ``gluon.data.DataLoader`` batches (``num_workers=0``; the book uses 4 workers) and
  ``d2l.train_batch_ch13`` (one host sync per batch); preprocessing by the book's
  ``SNLIBERTDataset`` (``multiprocessing.Pool(4)`` over forked workers).
* fast: ``gluon_bertft``'s ``BERTModel`` + ``BERTClassifier`` hybridized with static
  alloc/shape, ``make_iter(...)`` batches (trimmed to multiples of 4, 32 length buckets),
  ``gluon_bertft.training.loop.train`` itself (loss and accuracy sums stay on the device and are read
  only at its few log points) and ``gluon_bertft.data.snli.SNLIBERTDataset``.

Every measurement runs in its own spawned process, so each peak RSS is that path's alone.
Threads: the book's path runs twice, with the thread settings of this shell (MXNet 1.9 on x86
then uses half the processors as OpenMP threads: one on a 2-CPU machine) and with one thread
per physical core, the package's default (``gluon_bertft.common.threads``), which the fast path
uses. ``cpu_per_wall`` in the results shows the CPU time each timed window actually used per
second.

    PYTHONPATH=. python benchmarks/bench_speed.py [--quick] [--snli PATH] [--out FILE]
"""
import argparse
import datetime
import hashlib
import itertools
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon, init, np, npx

import gluon_bertft
from gluon_bertft.common import threads
from gluon_bertft.common.storage import write_json
from gluon_bertft.data.batching import make_iter
from gluon_bertft.data.snli import SNLIBERTDataset, encode_pairs, read_snli
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.finetune import split_rows
from gluon_bertft.models.build import PRESETS, build_bert
from gluon_bertft.models.heads import BERTClassifier
from gluon_bertft.training.devices import default_devices, set_seed
from gluon_bertft.training.evaluate import evaluate_accuracy
from gluon_bertft.training.loop import train
from gluon_bertft.training.trainer import make_trainer

from book_reference import BookBERTClassifier, BookSNLIBERTDataset  # benchmarks/, beside this script
from provenance import command_line, machine_info, package_digest

npx.set_np()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SNLI = os.path.normpath(os.path.join(REPO_ROOT, '..', 'shared', 'data', 'snli',
                                              'snli_1.0_dev.jsonl'))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'benchmarks', 'results', 'speed.json')
CONFIG = dict(PRESETS['bert.small'], vocab_size=20256)
DROPOUT, MAX_LEN, LR = 0.1, 128, 1e-4
FULL = dict(seconds=30.0, warmup=5, pairs=550_000, acc_steps=1000, heldout=2000)
QUICK = dict(seconds=2.0, warmup=2, pairs=20_000, acc_steps=10, heldout=500)
THREAD_ENV = ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', 'MXNET_CPU_WORKER_NTHREADS',
              'MXNET_ENGINE_TYPE')


# ---- shared set-up -------------------------------------------------------------------------


def split_off(columns, fraction, seed):
    """``split_rows`` over parallel columns (premises, hypotheses, labels)."""
    return tuple(tuple(list(c) for c in zip(*part))
                 for part in split_rows(list(zip(*columns)), fraction, seed))

def padded_vocab(pairs):
    """The vocabulary of the pairs' tokens, padded with filler tokens to the bert.small size."""
    vocab = build_vocab(pairs[0] + pairs[1])
    if len(vocab) > CONFIG['vocab_size']:
        raise SystemExit(f'{len(vocab)} SNLI tokens exceed the {CONFIG["vocab_size"]}-token vocabulary')
    vocab.idx_to_token += [f'<filler{i}>' for i in range(CONFIG['vocab_size'] - len(vocab))]
    vocab.token_to_idx = {token: i for i, token in enumerate(vocab.idx_to_token)}
    return vocab


def make_net(fast, params_file, devices):
    """The classifier of one path, with the shared initial weights of ``params_file`` if given."""
    if fast:
        net = BERTClassifier(build_bert(CONFIG, DROPOUT))
    else:
        net = BookBERTClassifier(d2l.BERTModel(
            CONFIG['vocab_size'], CONFIG['num_hiddens'], CONFIG['ffn_num_hiddens'],
            CONFIG['num_heads'], CONFIG['num_blks'], DROPOUT, CONFIG['max_len']))
    net.initialize(init.Xavier(), ctx=devices)
    if params_file:
        net.load_parameters(params_file, ctx=devices)
    if fast:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def make_trainer_for(fast, net, lazy=False):
    """The book's Adam Trainer over all parameters, or the package's ``make_trainer``."""
    if fast:
        return make_trainer(net, LR, lazy_embedding=lazy)
    return gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': LR})


def make_batches(fast, pairs, vocab, batch_size, train_mode):
    """An iterable of ``((tokens, segments, valid_lens), labels)`` batches for one path."""
    if fast:
        return make_iter(SNLIBERTDataset(pairs, MAX_LEN, vocab), batch_size, train_mode,
                         sort=True)
    tokens, segments, valid_lens = encode_pairs(pairs[0], pairs[1], vocab, MAX_LEN)
    # the book's dataset arrays (mxnet np, padded to 128) and item layout ((t, s, v), label)
    dataset = gluon.data.ArrayDataset(
        np.array(tokens, dtype='int32'), np.array(segments, dtype='int32'),
        np.array(valid_lens), np.array(pairs[2])).transform(lambda t, s, v, y: ((t, s, v), y))
    return gluon.data.DataLoader(dataset, batch_size, shuffle=train_mode, num_workers=0)


def endless(batches):
    """Batches of ``batches`` epoch after epoch (a new shuffle each epoch)."""
    while True:
        yield from batches


class Steps:
    """The next ``n`` batches of an endless batch iterator as one sized epoch.

    Iterating records each batch's number of examples in ``sizes``.
    """

    def __init__(self, batches, n):
        self.batches, self.n, self.sizes = batches, n, []

    def __len__(self):
        return self.n

    def __iter__(self):
        for features, labels in itertools.islice(self.batches, self.n):
            self.sizes.append(labels.shape[0])
            yield features, labels


def train_pass(fast, net, steps, test_batches, trainer, devices):
    """Train on the batches of ``steps``, then test; returns ``(seconds, train loss, test acc)``.

    Reference: the loop of ``d2l.train_ch13`` (``d2l.train_batch_ch13``, which reads loss and
    accuracy back after every batch, then ``d2l.evaluate_accuracy_gpus``), timed here.
    Fast: ``gluon_bertft.training.loop.train`` for one epoch, timed by its own examples/sec (which
    excludes the test pass).
    """
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if fast:
        history = train(net, steps, test_batches, loss, trainer, 1, devices, progress=False,
                        log=lambda *_: None)
        seconds = sum(steps.sizes) / history['examples_per_sec'][0]
        return seconds, history['train_loss'][0], history['test_acc'][0]
    start = time.perf_counter()
    loss_sum = sum(d2l.train_batch_ch13(net, features, labels, loss, trainer, devices,
                                        d2l.split_batch_multi_inputs)[0]
                   for features, labels in steps)
    seconds = time.perf_counter() - start
    test_acc = d2l.evaluate_accuracy_gpus(net, test_batches, d2l.split_batch_multi_inputs)
    return seconds, loss_sum / sum(steps.sizes), test_acc


def infer_pass(fast, net, steps, devices):
    """Seconds to classify the batches of ``steps`` (forward only, no autograd) and score them.

    Reference: ``d2l.evaluate_accuracy_gpus`` (one host sync per batch); fast:
    ``gluon_bertft.training.evaluate.evaluate_accuracy`` (one sync at the end).
    """
    start = time.perf_counter()
    if fast:
        evaluate_accuracy(net, steps, devices)
    else:
        d2l.evaluate_accuracy_gpus(net, steps, d2l.split_batch_multi_inputs)
    return time.perf_counter() - start


def throughput(run, batches, warmup, seconds, probe=3):
    """Examples/s of ``run(steps)``, which returns the seconds it took for a :class:`Steps`.

    ``warmup`` untimed steps, ``probe`` steps to estimate the step time, then one timed window
    of the fixed number of steps that takes about ``seconds``. ``cpu_per_wall`` is the CPU
    time this process used per second of that window (well below the core count when other
    processes compete for the CPU).
    """
    run(Steps(batches, warmup))
    elapsed = run(Steps(batches, probe))
    steps = Steps(batches, max(probe, round(seconds * probe / elapsed)))
    cpu, wall = time.process_time(), time.perf_counter()
    elapsed = run(steps)
    cpu_per_wall = (time.process_time() - cpu) / (time.perf_counter() - wall)
    examples = sum(steps.sizes)
    return dict(steps=steps.n, examples=examples, seconds=round(elapsed, 3),
                examples_per_sec=examples / elapsed, cpu_per_wall=round(cpu_per_wall, 2))


def peak_rss_mb():
    """This process's peak resident set size (VmHWM) in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


# ---- the measurements, each run in a fresh process -----------------------------------------

def speed_task(fast, snli, params_file, warmup, seconds, lazy=False, infer=True):
    """Training examples/s at batch 32 and 128, inference examples/s at 128, peak RSS.

    ``lazy``: the fast path with ``make_trainer(lazy_embedding=True)``; ``infer=False`` skips
    the inference measurement."""
    set_seed(0)
    devices = default_devices()
    pairs = read_snli(snli)
    vocab = padded_vocab(pairs)
    net = make_net(fast, params_file, devices)
    trainer = make_trainer_for(fast, net, lazy)
    result = {}
    for batch_size in (32, 128):
        batches = endless(make_batches(fast, pairs, vocab, batch_size, True))
        test_batches = [next(batches)]  # the test pass after each epoch: one batch, untimed
        result[f'train_{batch_size}'] = throughput(
            lambda steps: train_pass(fast, net, steps, test_batches, trainer, devices)[0],
            batches, warmup, seconds)
    if infer:
        batches = endless(make_batches(fast, pairs, vocab, 128, False))
        result['infer_128'] = throughput(lambda steps: infer_pass(fast, net, steps, devices),
                                         batches, warmup, seconds)
    result['peak_rss_mb'] = peak_rss_mb()
    return result


def accuracy_task(fast, snli, params_file, num_steps, heldout, seed):
    """Fine-tune ``num_steps`` steps at batch 32 from the shared weights; held-out accuracy."""
    set_seed(seed)
    devices = default_devices()
    pairs = read_snli(snli)
    vocab = padded_vocab(pairs)
    train_pairs, test_pairs = split_off(pairs, heldout / len(pairs[2]), seed)
    net = make_net(fast, params_file, devices)
    steps = Steps(endless(make_batches(fast, train_pairs, vocab, 32, True)), num_steps)
    seconds, train_loss, test_acc = train_pass(
        fast, net, steps, make_batches(fast, test_pairs, vocab, 128, False),
        make_trainer_for(fast, net), devices)
    return dict(steps=num_steps, train_examples=sum(steps.sizes),
                test_examples=len(test_pairs[2]), train_loss=train_loss, test_acc=test_acc,
                train_seconds=round(seconds, 3))


def preprocess_task(fast, snli, num_pairs):
    """Seconds to build the SNLI dataset of ``num_pairs`` pairs (the dev pairs repeated)."""
    pairs = read_snli(snli)
    vocab = padded_vocab(pairs)
    reps = -(-num_pairs // len(pairs[2]))
    data = tuple((column * reps)[:num_pairs] for column in pairs)
    if not fast:
        multiprocessing.set_start_method('fork', force=True)  # what the book's Pool relies on
    start = time.perf_counter()
    dataset = (SNLIBERTDataset if fast else BookSNLIBERTDataset)(data, MAX_LEN, vocab)
    seconds = time.perf_counter() - start
    digest = hashlib.sha1()
    for array in (dataset.all_token_ids, dataset.all_segments, dataset.valid_lens):
        array = onp.ascontiguousarray(array if fast else array.asnumpy())
        digest.update(f'{array.dtype}{array.shape}'.encode() + array.tobytes())
    return dict(pairs=num_pairs, seconds=round(seconds, 3), pairs_per_sec=num_pairs / seconds,
                peak_rss_mb=peak_rss_mb(), sha1=digest.hexdigest())


def init_weights_task(path, seed):
    """Write the classifier weights both paths start from (Xavier, ``seed``)."""
    set_seed(seed)
    devices = default_devices()
    net = make_net(False, None, devices)
    tokens = np.zeros((2, 8), dtype='int32', ctx=devices[0])
    net((tokens, tokens, np.array([8., 8.], ctx=devices[0])))  # resolve deferred shapes
    net.save_parameters(path)


def in_child(task, *args, omp_threads=None):
    """Run ``task(*args)`` in a new spawned process (with ``OMP_NUM_THREADS=omp_threads`` if
    given, else this process's environment) and return its result."""
    saved = os.environ.get('OMP_NUM_THREADS')
    if omp_threads:
        os.environ['OMP_NUM_THREADS'] = str(omp_threads)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
            return pool.submit(task, *args).result()
    finally:
        if saved is None:
            os.environ.pop('OMP_NUM_THREADS', None)
        else:
            os.environ['OMP_NUM_THREADS'] = saved


# ---- report --------------------------------------------------------------------------------

def table_rows(results):
    """Rows ``metric, reference, reference_cores, fast, ratio, ratio_cores`` (``None`` where
    a path was not measured that way)."""
    ref, ref_cores, fast = results['reference'], results['reference_cores'], results['fast']
    rows = [(f'preprocess {ref["preprocess"]["pairs"]:,} pairs [s, lower is better]',
             ref['preprocess']['seconds'], None, fast['preprocess']['seconds'])]
    for key, name in (('train_32', 'train examples/s, batch 32'),
                      ('train_128', 'train examples/s, batch 128'),
                      ('infer_128', 'inference examples/s, batch 128')):
        rows.append((name, ref['speed'][key]['examples_per_sec'],
                     ref_cores['speed'][key]['examples_per_sec'],
                     fast['speed'][key]['examples_per_sec']))
    for key, name in (('train_32', 'train examples/s, batch 32, lazy embedding Adam'),
                      ('train_128', 'train examples/s, batch 128, lazy embedding Adam')):
        rows.append((name, ref['speed'][key]['examples_per_sec'],
                     ref_cores['speed'][key]['examples_per_sec'],
                     fast['speed_lazy_embedding'][key]['examples_per_sec']))
    rows.append(('peak RSS training+inference [MiB, lower is better]', ref['speed']['peak_rss_mb'],
                 ref_cores['speed']['peak_rss_mb'], fast['speed']['peak_rss_mb']))
    rows.append(('peak RSS preprocessing, main process [MiB]',
                 ref['preprocess']['peak_rss_mb'], None, fast['preprocess']['peak_rss_mb']))
    acc = ref_cores['accuracy']
    rows.append((f'held-out accuracy after {acc["steps"]} steps at batch 32 '
                 f'({acc["test_examples"]} pairs)', None, acc['test_acc'],
                 fast['accuracy']['test_acc']))
    return [dict(metric=m, reference=r, reference_cores=rc, fast=f,
                 ratio=None if r is None else f / r, ratio_cores=None if rc is None else f / rc)
            for m, r, rc, f in rows]


def print_table(rows, cores):
    """Print the rows as a text table."""
    width = max(len(r['metric']) for r in rows)
    cell = lambda x: f'{"-":>12}' if x is None else f'{x:>12.3f}'
    print(f'{"metric":<{width}}  {"book":>12}  {f"book {cores} thr":>12}  {"fast":>12}  '
          f'{"fast/book":>12}  {f"/book {cores} thr":>12}')
    for r in rows:
        print(f'{r["metric"]:<{width}}  ' + '  '.join(cell(r[k]) for k in (
            'reference', 'reference_cores', 'fast', 'ratio', 'ratio_cores')))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--snli', default=DEFAULT_SNLI, help='SNLI .jsonl or .txt file of pairs')
    parser.add_argument('--out', default=DEFAULT_OUT, help='JSON file for the results')
    parser.add_argument('--quick', action='store_true', help=f'smoke-run sizes {QUICK}')
    parser.add_argument('--seconds', type=float, help='length of each timed window')
    parser.add_argument('--warmup', type=int, help='untimed steps before each timed window')
    parser.add_argument('--pairs', type=int, help='pairs to preprocess')
    parser.add_argument('--acc-steps', type=int, help='fine-tuning steps for the accuracy check')
    parser.add_argument('--heldout', type=int, help='held-out pairs for the accuracy check')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not os.path.isfile(args.snli):
        parser.error(f'SNLI file not found: {os.path.abspath(args.snli)} '
                     f'(give the path of snli_1.0_dev.jsonl with --snli)')
    return args


def main(argv=None):
    args = parse_args(argv)
    started = datetime.datetime.now().astimezone()
    load_before, digest_before = os.getloadavg(), package_digest()
    cores = threads.physical_cores() or os.cpu_count()
    results = dict(reference={}, reference_cores={}, fast={})
    with tempfile.TemporaryDirectory() as tmp:
        params_file = os.path.join(tmp, 'init.params')
        in_child(init_weights_task, params_file, args.seed)
        for name, fast, omp in (('reference', False, None), ('reference_cores', False, cores),
                                ('fast', True, cores)):
            print(f'== {name} path, OMP_NUM_THREADS={omp or os.environ.get("OMP_NUM_THREADS")}',
                  flush=True)
            result = results[name]
            if name != 'reference_cores':  # the book's Pool(4) does not use MXNet's threads
                result['preprocess'] = in_child(preprocess_task, fast, args.snli, args.pairs)
            result['speed'] = in_child(speed_task, fast, args.snli, params_file, args.warmup,
                                       args.seconds, omp_threads=omp)
            if name != 'reference':  # the accuracy check needs no second book run
                result['accuracy'] = in_child(accuracy_task, fast, args.snli, params_file,
                                              args.acc_steps, args.heldout, args.seed,
                                              omp_threads=omp)
            if fast:
                result['speed_lazy_embedding'] = in_child(
                    speed_task, fast, args.snli, params_file, args.warmup, args.seconds, True,
                    False, omp_threads=omp)
            result['omp_num_threads'] = omp or os.environ.get('OMP_NUM_THREADS')
            print(result, flush=True)
    rows = table_rows(results)
    same = results['reference']['preprocess']['sha1'] == results['fast']['preprocess']['sha1']
    digest = package_digest()
    print_table(rows, cores)
    print(f'preprocessed arrays identical: {same}')
    if digest != digest_before:
        print(f'WARNING: {os.path.dirname(gluon_bertft.__file__)} changed during the run; '
              f'the paths may have measured different code')
    report = dict(date=started.isoformat(timespec='seconds'),
                  command=command_line(), cwd=os.getcwd(),
                  package=dict(path=os.path.dirname(gluon_bertft.__file__),
                               sha1_before=digest_before, sha1_after=digest),
                  machine=dict(machine_info(THREAD_ENV), physical_cores=cores),
                  load_average_before=load_before, load_average_after=os.getloadavg(),
                  settings=vars(args), rows=rows, preprocessed_arrays_identical=same,
                  details=results)
    write_json(args.out, report)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
