"""The three Chinese tasks of docs/chinese.md: a small Chinese BERT pretrained here, against random init.

Phase ``corpus`` writes the pretraining text, one paragraph per line: the review texts of
``zh/sentiment/train.jsonl`` and the People's Daily sentences of ``zh/pos/train.txt`` (its
words joined). Training splits only: no dev text is seen in pretraining. Phase ``pretrain``
runs ``python -m gluon_bertft pretrain --format text`` on it (``bert.tiny``: 2 blocks, 128
hidden, 2 heads, FFN 256). Phase ``run`` fine-tunes each task through the CLI from that
checkpoint and from random initialization (``--pretrained random --preset bert.tiny``: the
same architecture, a vocabulary built from the task's training text), with the same flags;
every run reads with ``--tokenizer basic`` (one token per CJK character). Phase ``cli`` checks
``evaluate``, ``predict`` and ``explain`` on each fine-tuned model. Phase ``outputs`` measures
how much each encoder's outputs vary with the input. Phase ``report`` prints the table. Each run writes ``experiments/runs/zh/KEY/``; metrics, CPU and wall minutes and the
load go to ``experiments/results/zh_tasks.json``.

    python experiments/zh_tasks.py corpus
    python experiments/zh_tasks.py pretrain            # <= 30 CPU-minutes
    python experiments/zh_tasks.py run                 # 6 fine-tuning runs
    python experiments/zh_tasks.py cli
    python experiments/zh_tasks.py outputs
    python experiments/zh_tasks.py report

The runs import ``gluon_bertft`` from ``$PYTHONPATH`` (default: this checkout).
"""
import argparse
import fcntl
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ZH = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'zh')
RUNS = os.path.join(HERE, 'runs')
OUT = os.path.join(RUNS, 'zh')
CORPUS = os.path.join(RUNS, 'zh_corpus.txt')
MODEL = os.path.join(RUNS, 'bert_zh.zip')
RESULTS = os.path.join(HERE, 'results', 'zh_tasks.json')
data = lambda *p: os.path.join(ZH, *p)

PRETRAIN = ['--format', 'text', '--preset', 'bert.tiny', '--max-len', '128', '--batch-size', '64',
            '--lr', '1e-3', '--steps', '600', '--checkpoint-every', '50', '--devices', 'cpu']
INITS = {'random': ['--pretrained', 'random', '--preset', 'bert.tiny'],
         'pretrained': ['--pretrained', MODEL]}
COMMON = ['--tokenizer', 'basic', '--devices', 'cpu', '--seed', '0', '--batch-size', '32',
          '--lr', '5e-4']
TASKS = {
    'sentiment': dict(metric='accuracy', flags=[
        '--task', 'classify', '--train', data('sentiment', 'train.jsonl'),
        '--test', data('sentiment', 'dev.jsonl'), '--text-columns', 'text',
        '--label-column', 'label', '--max-examples', '4000', '--epochs', '2']),
    'pos': dict(metric='accuracy', flags=[
        '--task', 'tag', '--train', data('pos', 'train.txt'), '--test', data('pos', 'dev.txt'),
        '--tag-scheme', 'plain', '--max-examples', '2000', '--max-test-examples', '1000', '--max-len', '256',
        '--epochs', '2']),
    'ner': dict(metric='f1', flags=[
        '--task', 'tag', '--train', data('ner', 'train.txt'), '--test', data('ner', 'dev.txt'),
        '--max-examples', '2000', '--max-test-examples', '1000', '--max-len', '256', '--epochs', '4'],
        # at 2 epochs and lr 5e-4 the random-init model tagged every character O (F1 0)
        after=['--lr', '1e-3']),
}


def load_results():
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS, encoding='utf-8') as f:
        return json.load(f)


def update_results(section, key, record):
    """Set ``results[section][key] = record`` in the results file, under a lock (several
    phases may run at once)."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results()
        section = results.setdefault(section, {} if key is not None else [])
        if key is None:
            section.append(record)
        else:
            section[key] = record
        with open(RESULTS + '.tmp', 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=1, sort_keys=True, ensure_ascii=False)
        os.replace(RESULTS + '.tmp', RESULTS)


def corpus_lines():
    """The review texts, then the People's Daily sentences (words joined), one per line."""
    with open(data('sentiment', 'train.jsonl'), encoding='utf-8') as f:
        lines = [json.loads(line)['text'] for line in f if line.strip()]
    words = []
    with open(data('pos', 'train.txt'), encoding='utf-8') as f:
        for line in f:
            if line.strip():
                words.append(line.split('\t')[0])
            elif words:
                lines.append(''.join(words))
                words = []
    if words:
        lines.append(''.join(words))
    return [' '.join(line.split()) for line in lines]


def make_corpus(args):
    lines = corpus_lines()
    os.makedirs(RUNS, exist_ok=True)
    with open(CORPUS + '.tmp', 'w', encoding='utf-8') as f:
        f.writelines(line + '\n' for line in lines)
    os.replace(CORPUS + '.tmp', CORPUS)
    print(f'{CORPUS}: {len(lines):,} lines, {sum(map(len, lines)):,} characters')


def timed(cmd, log_path):
    """Run ``cmd`` (its output to ``log_path``): return code, wall and CPU minutes, load."""
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    env = dict(os.environ, PYTHONPATH=os.environ.get('PYTHONPATH') or ROOT)
    with open(log_path, 'w', encoding='utf-8') as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=RUNS).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(returncode=code, wall_minutes=(time.time() - start) / 60, cpu_minutes=cpu / 60,
                load_before=load[0], load_after=os.getloadavg()[0],
                command=' '.join(cmd[1:]).replace(ROOT + '/', ''))


def run_pretrain(args):
    cmd = [sys.executable, '-m', 'gluon_bertft', 'pretrain', '--corpus', CORPUS, '--out', MODEL,
           *PRETRAIN, '--resume'] + (['--steps', str(args.steps)] if args.steps else [])
    record = timed(cmd, os.path.join(RUNS, 'bert_zh.log'))
    update_results('pretrain', None, record)  # one record per (resumed) part of the run
    print(record)


def read_result(path):
    """A run's ``result.json``, or None when the run wrote none."""
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def run_one(task, init, out, seed=0):
    """Fine-tune ``task`` from ``init`` into ``out``; the record with the test metrics."""
    cmd = [sys.executable, '-m', 'gluon_bertft', 'finetune', *TASKS[task]['flags'],
           *INITS[init], *COMMON, *TASKS[task].get('after', []), '--out', out]
    cmd += ['--seed', str(seed)] if seed else []  # later flags win with argparse
    os.makedirs(out + '.log', exist_ok=True)
    record = timed(cmd, os.path.join(out + '.log', 'log.txt'))
    with open(os.path.join(out + '.log', 'log.txt'), encoding='utf-8') as f:
        text = f.read()
    result = read_result(os.path.join(out, 'result.json')) if record['returncode'] == 0 else None
    if result is None:
        record['error'] = text[-2000:]
        print(f'{task}/{init}: FAILED\n{text[-2000:]}', flush=True)
        return record
    record.update({k: result.get(k) for k in ('test', 'baseline', 'history', 'unknown')})
    print(f'{task}/{init}: {TASKS[task]["metric"]} {result["test"][TASKS[task]["metric"]]:.4f}, '
          f'{record["cpu_minutes"]:.1f} CPU-min, {record["wall_minutes"]:.1f} min', flush=True)
    return record


def run_runs(args):
    runs = load_results().get('runs', {})
    for task in args.tasks:
        for init in args.inits:
            key = f'{task}/{init}' + (f'/seed{args.seed}' if args.seed else '')
            if runs.get(key, {}).get('returncode') == 0 and not args.redo:
                print(f'{key}: done')
                continue
            print(f'== {key}', flush=True)
            out = os.path.join(OUT, key.replace('/', '_'))
            update_results('runs', key, run_one(task, init, out, args.seed))


# raw inputs of predict/explain per task: a review; a sentence (tagging reads words/characters)
SAMPLES = {'sentiment': ['--text', '剧情无聊，浪费时间。'],
           'pos': ['--text', '记者 从 有关 部门 获悉 ， 全国 普通 高中 招生 增加 。'],
           'ner': ['--text', '新 华 社 北 京 一 月 一 日 电 ， 江 泽 民 主 席 发 表 讲 话 。']}


def head_of(path, out, rows=200):
    """The first ``rows`` rows of a test file (JSON lines: lines; tagging: sentences), for
    the quick CLI checks."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    parts = text.splitlines(keepends=True) if path.endswith('.jsonl') else text.split('\n\n')
    with open(out, 'w', encoding='utf-8') as f:
        f.write(''.join(parts[:rows]) if path.endswith('.jsonl') else '\n\n'.join(parts[:rows]) + '\n')
    return out


def run_cli(args):
    """``evaluate``, ``predict`` (a file and a raw text) and ``explain`` on each model (the
    files: the first 200 rows of the task's test file)."""
    for task in args.tasks:
        for init in args.inits:
            model = os.path.join(OUT, f'{task}_{init}', 'model')
            test = TASKS[task]['flags'][TASKS[task]['flags'].index('--test') + 1]
            test = head_of(test, os.path.join(OUT, f'{task}_head200' + os.path.splitext(test)[1]))
            base = [sys.executable, '-m', 'gluon_bertft']
            where = os.path.join(OUT, f'{task}_{init}.cli')
            os.makedirs(where, exist_ok=True)
            for name, cmd in (
                    ('evaluate', ['evaluate', '--model', model, '--data', test, '--devices', 'cpu']),
                    ('predict_file', ['predict', '--model', model, '--data', test, '--output',
                                      os.path.join(where, 'predictions.jsonl'), '--devices', 'cpu']),
                    ('predict_text', ['predict', '--model', model, *SAMPLES[task], '--devices', 'cpu']),
                    ('explain', ['explain', '--model', model, *SAMPLES[task], '--out',
                                 os.path.join(where, 'explanation'), '--devices', 'cpu'])):
                record = timed(base + cmd, os.path.join(where, name + '.log'))
                with open(os.path.join(where, name + '.log'), encoding='utf-8') as f:
                    record['output'] = f.read()[-1500:]
                update_results('cli', f'{task}/{init}/{name}', record)
                print(f'{task}/{init} {name}: exit {record["returncode"]}\n{record["output"][-400:]}',
                      flush=True)


def mean_cosine(x):
    """The mean cosine similarity of the rows of ``x`` (n, d) between different rows."""
    import numpy as onp
    x = x / onp.linalg.norm(x, axis=1, keepdims=True)
    return float(((x @ x.T).sum() - len(x)) / (len(x) * (len(x) - 1)))


def run_outputs(args):
    """How much the encoder's outputs depend on the input: the mean cosine between the <cls>
    outputs of 64 dev reviews, and between 2,000 of their token outputs, for the pretrained
    model and for a random ``bert.tiny`` (no dropout: inference)."""
    import mxnet as mx
    import numpy as onp
    from mxnet import np
    from gluon_bertft.data.tokenize import basic
    from gluon_bertft.data.words import WordTokenizer
    from gluon_bertft.models.pretrained import load_bert
    with open(data('sentiment', 'dev.jsonl'), encoding='utf-8') as f:
        texts = [json.loads(line)['text'] for line in f][:64]
    models = {'pretrained': load_bert(MODEL, None, [mx.cpu()])[:2],
              'random': load_bert('random', 'bert.tiny', [mx.cpu()],
                                  vocab_text=[' '.join(basic(t)) for t in texts])[:2]}
    for init, (bert, vocab) in models.items():
        tokens, segments, valid_lens = WordTokenizer(vocab, 'basic').encode_texts(
            [(t,) for t in texts], 64)
        enc = bert.encoder(np.array(tokens), np.array(segments), np.array(valid_lens)).asnumpy()
        words = onp.concatenate([enc[i, 1:int(n) - 1] for i, n in enumerate(valid_lens)])[:2000]
        record = dict(cls=mean_cosine(enc[:, 0]), tokens=mean_cosine(words))
        update_results('outputs', init, record)
        print(f'{init}: mean cosine of <cls> outputs {record["cls"]:.4f}, of token outputs '
              f'{record["tokens"]:.4f}')


def report(args):
    results = load_results()
    runs = results.get('runs', {})
    for part in results.get('pretrain', []):
        print(f'pretrain: {part["command"]}: {part["cpu_minutes"]:.1f} CPU-min, '
              f'{part["wall_minutes"]:.1f} min wall, load {part["load_before"]:.1f}-{part["load_after"]:.1f}')
    print('| task | metric | random init | pretrained here | gain | baseline | CPU-min (wall) |')
    print('|---|---|---|---|---|---|---|')
    for task, spec in TASKS.items():
        rec = {init: runs.get(f'{task}/{init}') for init in INITS}
        if not all(r and r.get('returncode') == 0 for r in rec.values()):
            continue
        m = {init: r['test'][spec['metric']] for init, r in rec.items()}
        base = rec['random']['baseline'].get(spec['metric'])
        minutes = ' / '.join(f'{r["cpu_minutes"]:.1f} ({r["wall_minutes"]:.1f})' for r in rec.values())
        print(f'| {task} | {spec["metric"]} | {m["random"]:.3f} | {m["pretrained"]:.3f} | '
              f'{m["pretrained"] - m["random"]:+.3f} | {base if base is None else round(base, 3)} | {minutes} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('phase', choices=('corpus', 'pretrain', 'run', 'cli', 'outputs', 'report'))
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument('--inits', nargs='+', choices=list(INITS), default=list(INITS))
    parser.add_argument('--steps', type=int, help='pretrain: stop at this step (default: PRETRAIN\'s)')
    parser.add_argument('--seed', type=int, default=0, help='run: the fine-tuning seed')
    parser.add_argument('--redo', action='store_true', help='run again what has a result')
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    phases = dict(corpus=make_corpus, pretrain=run_pretrain, run=run_runs, cli=run_cli,
                  outputs=run_outputs, report=report)
    phases[args.phase](args)


if __name__ == '__main__':
    main()
