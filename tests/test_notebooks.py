"""Execute every notebook in notebooks/ top to bottom (FAST mode) and check what it printed.

Each ``notebooks/*.ipynb`` is run in a fresh ``python3`` kernel (the interpreter running
pytest) with ``GLUON_BERTFT_FAST=1`` and the repository root as working directory and on
``PYTHONPATH``. A notebook passes when no cell raises; notebooks listed in ``CHECKS`` also
have their outputs checked. Cells are found by their metadata tags.
"""
import glob
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
LABELS = ('entailment', 'contradiction', 'neutral')


def cell_text(cell):
    """Everything a code cell printed or displayed as text."""
    parts = []
    for out in cell.get('outputs', []):
        if out.output_type == 'stream':
            parts.append(out.text)
        elif out.output_type in ('execute_result', 'display_data'):
            parts.append(out.get('data', {}).get('text/plain', ''))
    return ''.join(parts)


def tagged(nb, tag):
    cells = [c for c in nb.cells if c.cell_type == 'code' and tag in c.metadata.get('tags', [])]
    assert len(cells) == 1, f'expected one code cell tagged {tag!r}, found {len(cells)}'
    return cell_text(cells[0])


def check_bert_finetuning_snli(nb):
    text = tagged(nb, 'load-bert')
    assert re.search(r'^BERT: (pretrained|random initialization, not pretrained)', text, re.M), text

    text = tagged(nb, 'decode')
    assert re.search(r'^tokens:\s+<cls> .+ <sep> .+ <sep>$', text, re.M), text

    text = tagged(nb, 'train')
    epochs = re.findall(r'^epoch (\d+)/(\d+): loss ([\d.]+|nan|inf), train acc ([\d.]+), '
                        r'test acc ([\d.]+)$', text, re.M)
    assert epochs, f'no training line in the output of the training cell:\n{text}'
    assert len(epochs) == int(epochs[-1][1]), text
    for _, _, loss, train_acc, test_acc in epochs:
        assert math.isfinite(float(loss)) and float(loss) > 0, text
        assert 0 <= float(train_acc) <= 1 and 0 <= float(test_acc) <= 1, text
    assert re.search(r'examples/sec on \[', text), text
    assert any(o.output_type == 'display_data' and 'image/svg+xml' in o.get('data', {})
               for c in nb.cells if 'train' in c.metadata.get('tags', [])
               for o in c.get('outputs', [])), 'the training cell displayed no d2l.Animator plot'

    text = tagged(nb, 'predict')
    predictions = re.findall(r'^prediction: (\w+) \|', text, re.M)
    assert len(predictions) >= 2, text
    assert set(predictions) <= set(LABELS), text


CHECKS = {'bert_finetuning_snli.ipynb': check_bert_finetuning_snli}
# falls back to data/snli_sample.jsonl; the others read ../shared/data
RUN_WITHOUT_SHARED = {'bert_finetuning_snli.ipynb'}
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')


@pytest.fixture
def fast_env(monkeypatch):
    """FAST mode and the repository on the kernel's import path (the kernel inherits os.environ)."""
    monkeypatch.setenv('GLUON_BERTFT_FAST', '1')
    path = os.environ.get('PYTHONPATH')
    monkeypatch.setenv('PYTHONPATH', ROOT + (os.pathsep + path if path else ''))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, fast_env):
    if os.path.basename(path) not in RUN_WITHOUT_SHARED and not os.path.isdir(SHARED):
        pytest.skip(f'{os.path.basename(path)} reads {SHARED}, which this clone does not have')
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': ROOT}})
    start = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f'{os.path.basename(path)}: a cell raised\n{e}', pytrace=False)
    print(f'{os.path.basename(path)}: executed in {time.time() - start:.1f}s')
    errors = [out for cell in nb.cells if cell.cell_type == 'code'
              for out in cell.get('outputs', []) if out.output_type == 'error']
    assert not errors, [f'{e.ename}: {e.evalue}' for e in errors]
    check = CHECKS.get(os.path.basename(path))
    if check is not None:
        check(nb)
