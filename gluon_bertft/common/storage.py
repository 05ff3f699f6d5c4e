"""Atomic writes, and the one saved-model folder layout of every task.

A saved model is a folder with ``config.json`` (architecture, task, labels, reader options,
lengths), the vocabulary (``vocab.json``, or a WordPiece tokenizer's files) and
``model.params``. Folders written by earlier versions (``classifier.params``, and SNLI
classifiers whose ``config.json`` names no task) still load.
"""
import contextlib
import errno
import json
import os
import shutil
import tempfile

from .errors import DivergedError, PretrainedError, WriteError
from .files import check_regular, place, read_bytes

PARAMS = 'model.params'
OLD_PARAMS = 'classifier.params'  # written by versions before the one pipeline


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success move it onto ``path`` in one step.

    Works for a file or a directory; on error the temporary is removed and ``path`` untouched.
    A write that fails (a full or read-only disk; MXNet's own error for a parameter file) is a
    :class:`~gluon_bertft.common.errors.WriteError` naming ``path`` and the cause. The
    temporary's name holds the writer's process id: one left by a killed process is removed
    by the next write beside it, never one of a live process.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale(parent, os.path.basename(path))
        tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.{os.getpid()}.', dir=parent)
    except OSError as e:
        raise WriteError(f'{path}: cannot write here ({e.strerror or e})') from None
    target = os.path.join(tmp, 'new')
    try:
        yield target
        if os.path.isdir(target) and os.path.isdir(path):
            old = os.path.join(tmp, 'old')
            os.replace(path, old)
        os.replace(target, path)
    except Exception as e:
        if isinstance(e, WriteError) and target in str(e):  # a write inside this one's
            raise WriteError(str(e).replace(target, path)) from None  # named where it goes
        if isinstance(e, WriteError) or not _write_failure(e):
            raise
        raise WriteError(f'{path}: could not be written ({_cause(e).replace(target, path)}); '
                         'nothing of it was kept') from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_failure(e):
    """An OS write error, or MXNet's error for a parameter file it could not write."""
    return isinstance(e, OSError) or (type(e).__name__ == 'MXNetError'
                                      and ('No space' in str(e) or 'write' in str(e).lower()))


def _cause(e):
    if isinstance(e, OSError) and e.strerror:
        return e.strerror + (' (free some space and rerun)' if e.errno == errno.ENOSPC else '')
    return str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__


def remove_stale(parent, name):
    """Remove the temporaries of ``name`` in ``parent`` (``.NAME.PID.*``) whose writing
    process no longer runs."""
    prefix = f'.{name}.'
    for entry in os.listdir(parent):
        pid = entry[len(prefix):].split('.')[0] if entry.startswith(prefix) else ''
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1)


def read_json(path, error=PretrainedError):
    """The JSON value in ``path``; ``error`` names the file (and line) when it is unreadable."""
    return parse_json(read_bytes(path, error), path, error)


def parse_json(data, where, error=PretrainedError):
    """The JSON value of the bytes ``data`` (of the file or zip member ``where``): UTF-8, a
    byte-order mark allowed; ``error`` names ``where`` and the line when it is not JSON."""
    try:
        return json.loads(data.decode('utf-8-sig'))
    except UnicodeDecodeError as e:
        line, column = place(data, e.start)
        raise error(f'{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, '
                    f'column {column}; JSON files are UTF-8)') from None
    except json.JSONDecodeError as e:
        raise error(f'{where}: invalid JSON at line {e.lineno}: {e.msg}') from None
    except RecursionError:  # json's parser recurses per nesting level
        raise error(f'{where}: invalid JSON (nested too deeply)') from None


def save_figure(fig, path):
    """Grid, legend and layout on ``fig``'s axes, then write it as a PNG atomically and close it."""
    from matplotlib import pyplot as plt
    for ax in fig.axes:
        ax.grid(True)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png')
    plt.close(fig)


def plot_history(history, path):
    """The book's train loss / train acc / test acc curves (and the validation metric), per
    epoch, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    epochs = range(1, len(history['train_loss']) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for key, style in (('train_loss', '-'), ('train_acc', 'm--'), ('test_acc', 'g-.'),
                       ('valid', 'r:')):
        if history.get(key):
            label = f'valid {history.get("valid_metric", "")}'.strip() if key == 'valid' else key
            ax.plot(epochs, history[key], style, label=label.replace('_', ' '))
    ax.set_xlabel('epoch')
    save_figure(fig, path)


def save_model(net, vocab, path, config):
    """Write a fine-tuned model folder atomically: ``config.json``, the vocabulary, ``model.params``.

    ``vocab`` is a ``d2l.Vocab`` (written as ``vocab.json``) or a tokenizer with a
    ``save(folder)`` method (WordPiece: its own files). ``DivergedError`` instead if a weight
    is not finite.
    """
    check_finite_weights(net, path)
    with atomic_path(path) as tmp:
        os.makedirs(tmp)
        if hasattr(vocab, 'save'):
            vocab.save(tmp)
        else:
            with open(os.path.join(tmp, 'vocab.json'), 'w', encoding='utf-8') as f:
                json.dump(vocab.idx_to_token, f)
        with open(os.path.join(tmp, 'config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f, indent=1)
        net.save_parameters(os.path.join(tmp, PARAMS))
    return path


def params_file(path):
    """The parameter file of a saved model folder (``model.params``, or an older version's)."""
    for name in (PARAMS, OLD_PARAMS):
        check_regular(os.path.join(path, name), PretrainedError)
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise PretrainedError(f'{path}: not a saved model (no {PARAMS})')


def check_finite_weights(net, path, when=''):
    """Raise ``DivergedError`` naming the parameter (and ``when``: the step) if a weight of
    ``net`` is nan or infinite: a model or checkpoint with such weights is never written."""
    import numpy as onp
    for name, param in net._collect_params_with_prefix().items():
        if not onp.isfinite(param.data().asnumpy()).all():
            raise DivergedError(f'{path}: not written{when}, parameter {name} has non-finite '
                                'values (training diverged: lower --lr)')
