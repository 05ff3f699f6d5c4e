"""Issue 24's kinds on what came with quantize, distill and export: damaged exported-graph
folders (inference/graph.py's loader), each file missing, empty, of the wrong kind or of another
export, end in one error naming the file (exit code 2), through predict."""
import json
import os
import shutil

import pytest
from test_quantize import tiny_model
from tiny_data import refused

from gluon_bertft.export import export

quiet = lambda *a: None


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """``(fp32 graph folder, another fp32 graph folder of a wider model)``."""
    root = tmp_path_factory.mktemp('graphs')
    path, _ = tiny_model('classify', root)
    export(path, 'mxnet', str(root / 'graph'), log=quiet)
    return str(root / 'graph')


def damaged(graph, tmp_path, change):
    folder = tmp_path / 'g'
    shutil.copytree(graph, folder)
    change(folder)
    return str(folder)


def swap_dir(path):
    os.remove(path)
    os.mkdir(path)


def swap_fifo(path):
    os.remove(path)
    os.mkfifo(path)


def replace_array(folder):
    """model-0000.params with one array of another shape (files of two exports)."""
    import mxnet as mx
    where = str(folder / 'model-0000.params')
    with mx.util.np_array(False), mx.util.np_shape(False):
        saved = mx.nd.load(where)
        name = next(k for k in saved if k.endswith('weight'))
        saved[name] = mx.nd.zeros((3, 5))
        mx.nd.save(where, saved)


DAMAGE = [
    (lambda f: os.remove(f / 'model-symbol.json'), r'model-symbol\.json'),
    (lambda f: (f / 'model-symbol.json').write_text(''), r'model-symbol\.json'),
    (lambda f: (f / 'model-symbol.json').write_text('[]'), r'model-symbol\.json: not an MXNet'),
    (lambda f: (f / 'model-symbol.json').write_text(
        '{"nodes": [{"op": "bogus", "name": "x", "inputs": []}], "arg_nodes": [0], '
        '"heads": [[0, 0, 0]]}'), r'model-symbol\.json: not a graph MXNet can load'),
    (lambda f: (f / 'model-symbol.json').write_bytes(
        (f / 'model-symbol.json').read_text().encode('utf-16')), r'model-symbol\.json'),
    (lambda f: swap_fifo(f / 'model-symbol.json'), r'model-symbol\.json: a named pipe'),
    (lambda f: os.remove(f / 'model-0000.params'), r'without model-0000\.params'),
    (lambda f: (f / 'model-0000.params').write_bytes(b''), r'model-0000\.params: not a readable'),
    (lambda f: (f / 'model-0000.params').write_bytes(b'\0garbage' * 100),
     r'model-0000\.params: not a readable'),
    (lambda f: (f / 'model-0000.params').write_bytes(
        (f / 'model-0000.params').read_bytes()[:1000]), r'model-0000\.params: not a readable'),
    (lambda f: swap_dir(f / 'model-0000.params'), r'model-0000\.params: a folder'),
    (replace_array, r'model-0000\.params: its arrays do not fit model-symbol\.json'),
]


@pytest.mark.parametrize('change, match', DAMAGE)
def test_a_damaged_graph_folder_names_the_file(graphs, tmp_path, capsys, change, match):
    folder = damaged(graphs, tmp_path, change)
    line = refused(capsys, 'predict', '--model', folder, '--text', 'lovely film', match=match)
    assert 'Traceback' not in line and 'Stack trace' not in line


def test_an_undamaged_copy_still_predicts(graphs, tmp_path, capsys):
    from tiny_data import cli_run
    folder = damaged(graphs, tmp_path, lambda f: None)
    code, err = cli_run(capsys, 'predict', '--model', folder, '--text', 'lovely film')
    assert code == 0, err


def test_a_graph_config_with_another_number_of_labels_is_refused(graphs, tmp_path, capsys):
    def three_labels(folder):
        config = json.loads((folder / 'config.json').read_text())
        config['labels'] = ['a', 'b', 'c']
        (folder / 'config.json').write_text(json.dumps(config))
    folder = damaged(graphs, tmp_path, three_labels)
    refused(capsys, 'predict', '--model', folder, '--text', 'lovely film',
            match=r'config\.json: "labels" has 3 classes but the graph has 2 outputs')
