"""The four §16.6 task runs of docs/tasks.md, from the pretrained checkpoint and from its random twin.

docs/tasks.md's "short CPU runs from random initialization" fine-tune ``bert.small`` shapes from
random weights with a vocabulary built from each task's training data. Here the same four tasks
(SST-2, SMS spam, CoNLL-2003 NER, SQuAD v1.1) and the same data and budgets run through the CLI
(``python -m gluon_bertft finetune --task ... --pretrained ZIP --devices cpu``) from the two
``bert.tiny`` checkpoints of ``pretrain_vs_random.py`` (2 blocks, 128 hidden, 2 heads, FFN 256):
``bert_tiny_wiki.zip`` (MLM + NSP on WikiText-2, 1,600 steps x 128 pairs) and
``bert_tiny_random.zip`` (its step-0 random weights, the same WikiText vocabulary). The two
runs of a task differ only in the initial encoder weights; both use one learning rate.

The vocabulary is now WikiText's (lower-cased, punctuation split off), so every task reads
with ``--tokenizer basic``; phase ``unk`` measures the share of ``<unk>`` tokens under that
vocabulary for both tokenizers. Each run writes ``experiments/runs/tasks/KEY/result.json`` and
its log; the metric, minutes (wall-clock of the whole command) and example counts go to
``experiments/results/tasks_pretrained_vs_random.json``.

    python experiments/tasks_pretrained_vs_random.py unk      # about 1 min
    python experiments/tasks_pretrained_vs_random.py smoke    # 64 examples, 1 epoch, each run
    python experiments/tasks_pretrained_vs_random.py run --lrs 1e-4 5e-4    # ~17 min on 2 cores
    python experiments/tasks_pretrained_vs_random.py run --lrs 5e-4 --seeds 1 2
    python experiments/tasks_pretrained_vs_random.py report

Run ``run`` under ``flock /tmp/heavy.lock`` when other CPU-heavy jobs share the machine. The
runs import ``gluon_bertft`` from ``$PYTHONPATH`` (default: this checkout); while the package
is being edited, give a frozen copy (``cp -r gluon_bertft /tmp/snap/``, ``PYTHONPATH=/tmp/snap``):
the SHA-1 of the code that ran is kept with the results. Runs are deterministic per seed here.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
RUNS = os.path.join(HERE, 'runs')
OUT = os.path.join(RUNS, 'tasks')
RESULTS = os.path.join(HERE, 'results', 'tasks_pretrained_vs_random.json')
MODELS = {'random': os.path.join(RUNS, 'bert_tiny_random.zip'),
          'pretrained': os.path.join(RUNS, 'bert_tiny_wiki.zip')}
TOKENIZER = 'basic'
data = lambda *p: os.path.join(SHARED, *p)

# docs/tasks.md's random-init table: data and budget flags per task (its learning rates in
# ``readme_lr``), the metric read from result.json's ``test`` and how it is shown.
TASKS = {
    'sst2': dict(
        title='SST-2 (GLUE), dev', metric='accuracy', label='dev accuracy', scale=1,
        flags=['--task', 'classify', '--train', data('sst2', 'train.tsv'),
               '--test', data('sst2', 'dev.tsv'), '--max-examples', '20000', '--epochs', '2',
               '--batch-size', '64'],
        extra=['macro_f1'], readme_lr=5e-4),
    'spam': dict(
        title='SMS Spam (fixed 20% split)', metric='f1[spam]', label='spam F1', scale=1,
        flags=['--task', 'classify', '--train', data('sms_spam', 'SMSSpamCollection'),
               '--text-columns', '1', '--label-column', '0', '--test-fraction', '0.2',
               '--seed', '0', '--epochs', '3', '--batch-size', '32'],
        extra=['accuracy', 'macro_f1'], readme_lr=1e-4),
    'conll': dict(
        title='CoNLL-2003 NER, eng.testa', metric='f1', label='entity F1', scale=1,
        flags=['--task', 'tag', '--train', data('conll2003', 'eng.train'),
               '--test', data('conll2003', 'eng.testa'), '--epochs', '2', '--batch-size', '32'],
        extra=['precision', 'recall'], readme_lr=5e-4),
    'squad': dict(
        title='SQuAD v1.1, shared dev', metric='f1', label='F1 (EM)', scale=1,
        flags=['--task', 'qa', '--train', data('squad', 'train-v1.1.subset.json'),
               '--test', data('squad', 'dev-v1.1.shared.json'), '--max-examples', '4000',
               '--epochs', '2', '--batch-size', '32'],
        extra=['exact_match'], readme_lr=5e-4),
}


# This driver only starts CLI runs and does not import gluon_bertft (so that the runs use the
# package on $PYTHONPATH, a frozen copy while the checkout is edited): hence its own JSON I/O.
def load_results():
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS, encoding='utf-8') as f:
        return json.load(f)


def save_results(results):
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    tmp = RESULTS + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(tmp, RESULTS)


def lr_name(lr):
    return f'{lr:g}'


def run_key(task, init, lr, seed=0):
    return f'{task}/{init}/lr{lr_name(lr)}' + (f'/seed{seed}' if seed else '')


def command(task, init, lr, out, smoke=False, seed=0):
    cmd = [sys.executable, '-m', 'gluon_bertft', 'finetune', *TASKS[task]['flags'],
           '--pretrained', MODELS[init], '--devices', 'cpu', '--tokenizer', TOKENIZER,
           '--lr', lr_name(lr), '--out', out]
    if seed:  # later flags win with argparse; spam: the seed also draws the split
        cmd += ['--seed', str(seed)]
    if smoke:  # later flags win with argparse
        cmd += ['--max-examples', '64', '--max-test-examples', '64', '--epochs', '1']
    return cmd


def child_env():
    """The children import ``gluon_bertft`` from ``$PYTHONPATH`` (default: this checkout), so
    that a frozen copy of the package can be given while it is being edited. They run in
    ``experiments/runs`` because ``python -m`` puts the working directory ahead of it."""
    return dict(os.environ, PYTHONPATH=os.environ.get('PYTHONPATH') or ROOT)


def source_info():
    """Where ``gluon_bertft`` is imported from by the child processes, and the repo's commit."""
    env_path = os.environ.get('PYTHONPATH', '')
    found = subprocess.run([sys.executable, '-c', 'import gluon_bertft, os; '
                            'print(os.path.dirname(gluon_bertft.__file__))'],
                           cwd=RUNS, env=child_env(), capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return dict(package=found, package_sha1=tree_sha1(found), pythonpath=env_path,
                repo_commit=commit, omp_num_threads=os.environ.get('OMP_NUM_THREADS'))


def tree_sha1(folder):
    """SHA-1 over the package's ``.py`` files (relative path and bytes, sorted): which code ran.
    Compare with ``git archive COMMIT gluon_bertft`` unpacked and hashed the same way."""
    sha1 = hashlib.sha1()
    for dirpath, dirnames, filenames in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(f for f in filenames if f.endswith('.py')):
            path = os.path.join(dirpath, name)
            sha1.update(os.path.relpath(path, folder).encode() + b'\0')
            with open(path, 'rb') as f:
                sha1.update(f.read())
    return sha1.hexdigest()


def parse_log(text):
    """Example counts and training speed from the CLI's log."""
    info = {}
    m = re.search(r'(\d+) tokens; \S+: (\d+) training, (\d+) test examples', text)
    if m:
        info.update(vocab=int(m.group(1)), train_examples=int(m.group(2)),
                    test_examples=int(m.group(3)))
    m = re.search(r'(\d+) of (\d+) training questions dropped', text)
    if m:
        info['train_questions_dropped'] = int(m.group(1))
    speeds = re.findall(r'([\d.]+) examples/sec', text)
    if speeds:
        info['train_examples_per_sec'] = float(speeds[-1])
    return info


def run_one(task, init, lr, out, smoke=False, seed=0):
    cmd = command(task, init, lr, out, smoke, seed)
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, 'log.txt')
    result_path = os.path.join(out, 'result.json')
    if os.path.exists(result_path):
        os.remove(result_path)
    print('$ ' + ' '.join(cmd), flush=True)
    load_before = os.getloadavg()
    start = time.time()
    with open(log_path, 'w', encoding='utf-8') as log:
        proc = subprocess.run(cmd, cwd=RUNS, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    minutes = (time.time() - start) / 60
    with open(log_path, encoding='utf-8') as f:
        text = f.read()
    record = dict(task=task, init=init, model=os.path.relpath(MODELS[init], ROOT), lr=lr, seed=seed,
                  command=' '.join(os.path.relpath(c, ROOT) if c.startswith(SHARED) or
                                   c.startswith(HERE) else c for c in cmd[1:]),
                  minutes=minutes, returncode=proc.returncode, out=os.path.relpath(out, ROOT),
                  loadavg_before=load_before, loadavg_after=os.getloadavg(), **parse_log(text))
    if proc.returncode != 0 or not os.path.exists(result_path):
        record['error'] = text[-3000:]
        print(f'FAILED ({proc.returncode}); last lines of {log_path}:\n{text[-3000:]}', flush=True)
        return record
    with open(result_path, encoding='utf-8') as f:
        result = json.load(f)
    record.update(test=result['test'], baseline=result['baseline'],
                  history={k: v for k, v in result.items() if k not in ('test', 'baseline')})
    print(f'{task}/{init}/lr {lr_name(lr)}: {TASKS[task]["metric"]} '
          f'{result["test"][TASKS[task]["metric"]]:.4f} in {minutes:.1f} min', flush=True)
    return record


def run_smoke(args):
    results = load_results()
    results['smoke'] = {}
    for task in args.tasks:
        for init in args.inits:
            key = f'{task}/{init}'
            record = run_one(task, init, args.lrs[0], os.path.join(OUT, 'smoke', task, init),
                             smoke=True)
            results['smoke'][key] = {k: record.get(k) for k in
                                     ('returncode', 'minutes', 'error', 'train_examples',
                                      'test_examples', 'command')}
            save_results(results)
    failed = [k for k, r in results['smoke'].items() if r['returncode'] != 0]
    print('smoke: ' + (f'FAILED {failed}' if failed else 'all ran'))


def run_runs(args):
    results = load_results()
    results['source'] = source_info()
    runs = results.setdefault('runs', {})
    for seed in args.seeds:
        for lr in args.lrs:
            for task in args.tasks:
                for init in args.inits:
                    key = run_key(task, init, lr, seed)
                    if key in runs and runs[key].get('returncode') == 0 and not args.redo:
                        print(f'{key}: done')
                        continue
                    print(f'== {key}', flush=True)
                    runs[key] = run_one(task, init, lr, os.path.join(OUT, key.replace('/', '_')),
                                        seed=seed)
                    runs[key]['source'] = results['source']
                    save_results(results)


# --- <unk> rates under the checkpoint's vocabulary -----------------------------------------

def unk_texts(task):
    """``{split: texts}`` as each run reads them (training rows after the split and cap);
    CoNLL: every word is tokenized by itself, as tagging does; SQuAD: questions and each
    distinct passage once."""
    from gluon_bertft.data import conll, squad, tsv
    from gluon_bertft.finetune import split_rows
    if task == 'sst2':
        return {'train (first 20,000)': [r.texts[0] for r in tsv.read_table(data('sst2', 'train.tsv'))][:20000],
                'dev': [r.texts[0] for r in tsv.read_table(data('sst2', 'dev.tsv'))]}
    if task == 'spam':
        rows = tsv.read_table(data('sms_spam', 'SMSSpamCollection'), ('1',), '0')
        train, test = split_rows(rows, 0.2, 0)
        return {'train (80%)': [r.texts[0] for r in train], 'test (20%)': [r.texts[0] for r in test]}
    if task == 'conll':
        words = lambda f: [w for s in conll.read_conll(data('conll2003', f)) for w in s.words]
        return {'eng.train': words('eng.train'), 'eng.testa': words('eng.testa')}
    if task == 'squad':
        texts = lambda qs: list(dict.fromkeys(t for q in qs for t in (q.question, q.context)))
        return {'train (first 4,000 questions)': texts(squad.read_squad(data('squad', 'train-v1.1.subset.json'))[:4000]),
                'dev (shared)': texts(squad.read_squad(data('squad', 'dev-v1.1.shared.json')))}
    raise ValueError(task)


def run_unk(args):
    from gluon_bertft.data.tokenize import TOKENIZERS, unk_rate
    from gluon_bertft.models import pretrained
    tokens, _, _ = pretrained._open_model_files(MODELS['pretrained'])
    vocab = pretrained.vocab_from_tokens(tokens)
    results = load_results()
    results['unk'] = {'vocab_size': len(vocab), 'rows': {}}
    for task in TASKS:
        for split, texts in unk_texts(task).items():
            row = {}
            for name, tokenize in TOKENIZERS.items():
                unknown, total = unk_rate([tokenize(t) for t in texts], vocab)
                row[name] = dict(unknown=unknown, tokens=total, rate=unknown / total)
            results['unk']['rows'][f'{task}/{split}'] = row
            print(f'{task} {split}: <unk> whitespace {100 * row["whitespace"]["rate"]:.1f}%, '
                  f'basic {100 * row["basic"]["rate"]:.1f}% of {row["basic"]["tokens"]:,} tokens')
    save_results(results)


# --- report --------------------------------------------------------------------------------

def show(task, report):
    """The task's metric (and its companion) from a ``test``/``baseline`` dict."""
    if task == 'squad':
        return f'F1 {report["f1"]:.1f}, EM {report["exact_match"]:.1f}'
    if task == 'conll':
        return f'F1 {report["f1"]:.3f} (P {report["precision"]:.3f}, R {report["recall"]:.3f})'
    if task == 'spam':
        return f'spam F1 {report.get("f1[spam]", 0.0):.3f}, acc {report["accuracy"]:.3f}'
    return f'acc {report["accuracy"]:.3f}, macro-F1 {report["macro_f1"]:.3f}'


def report(args):
    results = load_results()
    runs = results.get('runs', {})
    lrs = sorted({r['lr'] for r in runs.values()})
    print('| task, data | metric | lr | random init (same vocab) | pretrained | gain | '
          'trivial baseline | training examples | minutes (random / pretrained) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for task, spec in TASKS.items():
        for lr in lrs:
            rec = {init: runs.get(run_key(task, init, lr)) for init in MODELS}
            if not all(rec.values()):
                continue
            ok = {init: r.get('returncode') == 0 for init, r in rec.items()}
            cell = lambda init: show(task, rec[init]['test']) if ok[init] else 'failed'
            metric = lambda init: rec[init]['test'].get(spec['metric'], 0.0)
            gain = (f'{metric("pretrained") - metric("random"):+.3f}' if task != 'squad' else
                    f'{metric("pretrained") - metric("random"):+.1f} F1') if all(ok.values()) else ''
            base = next((r['baseline'] for r in rec.values() if 'baseline' in r), None)
            examples = rec['random'].get('train_examples', '?')
            print(f'| {spec["title"]} | {spec["label"]} | {lr_name(lr)} | {cell("random")} | '
                  f'{cell("pretrained")} | {gain} | {show(task, base) if base else ""} | '
                  f'{examples:,} | {rec["random"]["minutes"]:.1f} / '
                  f'{rec["pretrained"]["minutes"]:.1f} |')
    seeds_table(runs, lrs)
    unk = results.get('unk')
    if unk:
        print(f'\n`<unk>` share under the checkpoints\' vocabulary ({unk["vocab_size"]:,} tokens):\n')
        print('| data | tokens (basic) | `<unk>`, basic (used) | `<unk>`, whitespace |')
        print('|---|---|---|---|')
        order = list(TASKS)  # the JSON's keys are sorted: show the tasks in TASKS order
        for key, row in sorted(unk['rows'].items(),
                               key=lambda kv: (order.index(kv[0].split('/')[0]), 'test' in kv[0]
                                               or 'dev' in kv[0] or 'testa' in kv[0])):
            task, split = key.split('/', 1)
            print(f'| {TASKS[task]["title"].split(",")[0].split(" (")[0]} {split} | '
                  f'{row["basic"]["tokens"]:,} | {100 * row["basic"]["rate"]:.1f}% | '
                  f'{100 * row["whitespace"]["rate"]:.1f}% |')
    src = results.get('source')
    if src:
        print(f'\npackage: {src["package"]} (sha1 of its .py files {src.get("package_sha1", "?")[:12]}; '
              f'checkout at {src["repo_commit"][:10]} then), OMP_NUM_THREADS={src["omp_num_threads"]}')


def seeds_table(runs, lrs):
    """Mean and each seed's value of the task metric, where a task/lr ran more than seed 0."""
    lines = []
    for task, spec in TASKS.items():
        for lr in lrs:
            values = {}
            for init in MODELS:
                for rec in runs.values():
                    if (rec['task'], rec['init'], rec['lr']) == (task, init, lr) and \
                            rec.get('returncode') == 0:
                        values.setdefault(init, {})[rec.get('seed', 0)] = rec['test'].get(spec['metric'], 0.0)
            seeds = sorted(set(values.get('random', {})) & set(values.get('pretrained', {})))
            if len(seeds) < 2:
                continue
            fmt = (lambda v: f'{v:.1f}') if task == 'squad' else (lambda v: f'{v:.3f}')
            cells = []
            for init in MODELS:
                vals = [values[init][s] for s in seeds]
                cells.append(f'{fmt(sum(vals) / len(vals))} ({", ".join(fmt(v) for v in vals)})')
            wins = sum(values['pretrained'][s] > values['random'][s] for s in seeds)
            lines.append(f'| {spec["title"]} | {spec["metric"]} | {lr_name(lr)} | '
                         f'{", ".join(map(str, seeds))} | {cells[0]} | {cells[1]} | '
                         f'{wins} of {len(seeds)} |')
    if lines:
        print('\nOver seeds (mean, then each seed; spam: the seed also draws the 20% split):\n')
        print('| task, data | metric | lr | seeds | random init | pretrained | pretrained ahead |')
        print('|---|---|---|---|---|---|---|')
        print('\n'.join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('phase', choices=('unk', 'smoke', 'run', 'report'))
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument('--inits', nargs='+', choices=list(MODELS), default=list(MODELS))
    parser.add_argument('--lrs', type=float, nargs='+', default=[1e-4],
                        help='learning rates; each runs for both checkpoints')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='seed 0 is docs/tasks.md\'s; for spam the seed also draws the split')
    parser.add_argument('--redo', action='store_true', help='run again what has a result')
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    phases = dict(unk=run_unk, smoke=run_smoke, run=run_runs, report=report)
    phases[args.phase](args)


if __name__ == '__main__':
    main()
