"""A Trainer's optimizer state as arrays and JSON, without pickle.

MXNet's ``Trainer.save_states`` pickles the updater's states and the optimizer object, and
``load_states`` unpickles them: a checkpoint folder from someone else could run any code. Here
the states (Adam's moments: per parameter index a tuple of arrays) go to ``optimizer.params``
in MXNet's own array format, and what the optimizer counts (its update counts per index and in
all, the schedule's fields) to ``optimizer.json``. A resumed run builds its optimizer exactly as
the interrupted one did (``make_trainer`` with the same settings, which the checkpoint checks)
and takes these back, which gives the same updates as the pickle did (tests/test_resume.py).
"""
import json
import numbers
import os

import mxnet as mx

ARRAYS, COUNTS = 'optimizer.params', 'optimizer.json'


def _updaters(trainer):
    """The Python updaters that hold the states: the kvstore's when it updates, else one per
    device (initialized as ``save_states``/``load_states`` do)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return trainer._updaters


def _flatten(state, key, arrays):
    """A state (None, an array, or nested tuples of them) as a JSON layout; arrays into
    ``arrays`` under ``key`` and its sub-keys."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return [_flatten(s, f'{key}.{i}', arrays) for i, s in enumerate(state)]
    arrays[key] = state.as_nd_ndarray() if hasattr(state, 'as_nd_ndarray') else state
    return key


def _unflatten(layout, arrays):
    if layout is None:
        return None
    if isinstance(layout, list):
        return tuple(_unflatten(item, arrays) for item in layout)
    return arrays[layout].copy()


def save(trainer, folder):
    """Write ``trainer``'s optimizer state into ``folder`` (:data:`ARRAYS`, :data:`COUNTS`)."""
    updater = _updaters(trainer)[0]
    arrays = {}
    layout = {str(i): _flatten(s, str(i), arrays) for i, s in updater.states.items()}
    mx.nd.save(os.path.join(folder, ARRAYS), arrays)
    opt = updater.optimizer
    scheduler = opt.lr_scheduler
    counts = dict(
        optimizer=type(opt).__name__, num_update=opt.num_update, lr=opt.lr, layout=layout,
        update_counts={str(d): {str(i): n for i, n in c.items()}
                       for d, c in opt._all_index_update_counts.items()},
        scheduler=None if scheduler is None else {
            k: v for k, v in vars(scheduler).items() if isinstance(v, (numbers.Number, str))})
    with open(os.path.join(folder, COUNTS), 'w', encoding='utf-8') as f:
        json.dump(counts, f, indent=1)


def load(trainer, folder):
    """Put the optimizer state saved in ``folder`` into ``trainer`` (built as the saved run's
    was). Raises ``ValueError`` for a state of another optimizer or a broken file."""
    with open(os.path.join(folder, COUNTS), encoding='utf-8') as f:
        counts = json.load(f)
    opt = trainer._optimizer
    if counts.get('optimizer') != type(opt).__name__:
        raise ValueError(f'the state is of {counts.get("optimizer")}, the run uses '
                         f'{type(opt).__name__}')
    arrays = mx.nd.load(os.path.join(folder, ARRAYS))
    for updater in _updaters(trainer):
        updater.states = {int(i): _unflatten(lay, arrays) for i, lay in counts['layout'].items()}
        updater.states_synced = dict.fromkeys(updater.states, False)  # moved to each device
        updater.optimizer = opt
    opt.num_update, opt.lr = int(counts['num_update']), counts['lr']
    opt._all_index_update_counts = {int(d): {int(i): n for i, n in c.items()}
                                    for d, c in counts['update_counts'].items()}
    opt._index_update_count = opt._all_index_update_counts.setdefault(0, {})
    for key, value in (counts.get('scheduler') or {}).items():
        setattr(opt.lr_scheduler, key, value)
