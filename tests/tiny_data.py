"""Tiny data files of every task, written into a test's folder, and the tiny run options.

Each file is made of a few dozen synthetic examples with a learnable signal, so a run from
random initialization with :data:`TINY_RUN` (``bert.tiny``, 32 tokens, batch 16) takes seconds.
"""
import json
import random

from conftest import SAMPLE

# the options of a run that takes seconds: bert.tiny (2 blocks, 128 hidden), random weights
TINY_RUN = dict(pretrained='random', preset='bert.tiny', max_len=32, batch_size=16,
                devices='cpu', max_test_examples=16)
WORDS = tuple('the film was a story of one day in town with friends and food'.split())
GOOD, BAD = ('great', 'fine', 'lovely', 'superb'), ('awful', 'dull', 'poor', 'bad')
CITIES, NAMES = ('paris', 'london', 'berlin', 'rome'), ('anna', 'peter', 'maria', 'john')


def classify_tsv(path, n=48, seed=0):
    """``sentence<TAB>label`` rows with a header: ``pos`` rows hold a good word, ``neg`` a bad one."""
    rng = random.Random(seed)
    lines = ['sentence\tlabel']
    for i in range(n):
        label = 'pos' if i % 2 else 'neg'
        words = rng.sample(WORDS, 5) + [rng.choice(GOOD if label == 'pos' else BAD)]
        rng.shuffle(words)
        lines.append(f'{" ".join(words)}\t{label}')
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def tag_sentences(n=48, seed=0):
    """``[(words, tags)]``: a city is ``B-LOC``, a name ``B-PER``, ``new york`` ``B-LOC I-LOC``."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            kind = rng.random()
            if kind < 0.15:
                words += ['New', 'York']
                tags += ['B-LOC', 'I-LOC']
            elif kind < 0.3:
                words.append(rng.choice(CITIES).title())
                tags.append('B-LOC')
            elif kind < 0.45:
                words.append(rng.choice(NAMES).title())
                tags.append('B-PER')
            else:
                words.append(rng.choice(WORDS))
                tags.append('O')
        sentences.append((words, tags))
    return sentences


def conll_file(path, n=48, seed=0, tagged=True):
    """A CoNLL file (``word POS CHUNK TAG`` lines, documents and sentences) of :func:`tag_sentences`."""
    blocks = ['-DOCSTART- -X- -X- O\n']
    for words, tags in tag_sentences(n, seed):
        blocks.append(''.join(f'{w} NN I-NP {t}\n' if tagged else f'{w}\n'
                              for w, t in zip(words, tags)))
    path.write_text('\n'.join(blocks), encoding='utf-8')
    return str(path)


def squad_json(path, n=48, seed=0, answers=True):
    """A SQuAD v1.1 file: "Where does NAME live?" over a passage that says where."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        name, city = rng.choice(NAMES).title(), rng.choice(CITIES).title()
        filler = ' '.join(rng.sample(WORDS, 4))
        context = f'{filler} . {name} lives in {city} . {" ".join(rng.sample(WORDS, 3))} .'
        qa = dict(id=f'q{i}', question=f'Where does {name} live ?')
        qa['answers'] = ([dict(text=city, answer_start=context.index(f'in {city}') + 3)]
                         if answers else [])
        paragraphs.append(dict(context=context, qas=[qa]))
    path.write_text(json.dumps(dict(version='1.1', data=[dict(title='t', paragraphs=paragraphs)]),
                               indent=1), encoding='utf-8')
    return str(path)


def snli_lines(path, start=0, stop=64):
    """Lines ``start:stop`` of data/snli_sample.jsonl."""
    with open(SAMPLE, encoding='utf-8') as f:
        path.write_text(''.join(f.readlines()[start:stop]), encoding='utf-8')
    return str(path)


def wiki_file(path, lines=300, seed=0):
    """A WikiText-like file: a title line, then paragraphs of ``' . '``-separated sentences
    over a small vocabulary (every word occurs 5 times or more)."""
    rng = random.Random(seed)
    vocab = list(WORDS + GOOD + BAD + CITIES + NAMES)
    text = [' = Title = \n']
    for _ in range(lines):
        sentences = [' '.join(rng.choice(vocab) for _ in range(rng.randint(4, 9)))
                     for _ in range(rng.randint(2, 5))]
        text.append(' ' + ' . '.join(sentences) + ' . \n')
    path.write_text(''.join(text), encoding='utf-8')
    return str(path)


def task_files(task, folder):
    """FinetuneConfig fields (train/test files, task options) of a tiny run of ``task``."""
    if task == 'snli':
        return dict(train=snli_lines(folder / 'train.jsonl', 0, 48),
                    test=snli_lines(folder / 'test.jsonl', 100, 116))
    if task == 'classify':
        return dict(train=classify_tsv(folder / 'train.tsv'),
                    test=classify_tsv(folder / 'test.tsv', 16, seed=1))
    if task == 'tag':
        return dict(train=conll_file(folder / 'train.conll'),
                    test=conll_file(folder / 'test.conll', 16, seed=1))
    if task == 'qa':
        return dict(train=squad_json(folder / 'train.json'),
                    test=squad_json(folder / 'test.json', 16, seed=1),
                    stride=8, max_query_len=8)
    raise ValueError(task)


# --- the CLI on bad input (tests/test_bad_input.py, tests/test_bad_runs.py) ---

# TINY_RUN as finetune options, one epoch
TINY_ARGS = ['--pretrained', 'random', '--preset', 'bert.tiny', '--max-len', '32',
             '--batch-size', '16', '--epochs', '1', '--devices', 'cpu', '--max-test-examples', '16']


def cli_run(capsys, *argv):
    """``(exit code, stderr)`` of ``python -m gluon_bertft ARGV`` run in this process
    (argparse's own errors exit through ``SystemExit(2)``)."""
    from gluon_bertft import cli
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def refused(capsys, *argv, match):
    """Run the CLI and check that it refused: exit code 2, no traceback, and a last stderr line
    ``...error: ...`` that matches ``match`` (a regex) and is short; returns that line."""
    import re
    code, err = cli_run(capsys, *argv)
    assert code == 2, err
    assert 'Traceback' not in err
    line = err.strip().splitlines()[-1]
    assert 'error: ' in line and len(line) < 1000, line
    assert re.search(match, line), line
    return line


def untrained_model(task_name, folder, files=None, init=None, seed=None):
    """A saved model folder of ``task_name`` as finetune writes it, its weights as initialized
    (``init``: the output layer's initializer; ``seed``: MXNet's, before the BERT is made), on
    ``files`` (default: :func:`task_files` in ``folder``)."""
    import mxnet as mx

    from gluon_bertft.common import storage
    from gluon_bertft.config import FinetuneConfig
    from gluon_bertft.finetune import task_of_config
    from gluon_bertft.models import pretrained
    files = files or task_files(task_name, folder)
    config = FinetuneConfig(task=task_name, **dict(TINY_RUN, **files))
    task = task_of_config(config)
    rows = task.read(config.train)
    task.fit(rows)
    if seed is not None:
        mx.random.seed(seed)
    bert, vocab, bert_cfg = pretrained.load_bert('random', 'bert.tiny', [mx.cpu()], 0.1,
                                                 task.vocab_text(rows))
    net = task.head(bert)
    net.output.initialize(init or mx.init.Uniform(), ctx=[mx.cpu()])  # Block.initialize's default
    return storage.save_model(net, vocab, str(folder / 'model'), dict(task.config, bert=bert_cfg))


def once_per_task(tmp_path_factory, make):
    """A getter ``get(task)`` returning ``make(task, folder)``, made once per task (in a fresh
    temporary folder) and shared by a module's tests: the module-scoped fixtures' pattern."""
    made = {}

    def get(task):
        if task not in made:
            made[task] = make(task, tmp_path_factory.mktemp(task))
        return made[task]
    return get
