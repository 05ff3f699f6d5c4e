"""One resumable training state, shared by fine-tuning and pretraining.

A checkpoint folder holds ``model.params``, ``optimizer.params`` and ``optimizer.json``
(Adam's moments and step counts, :mod:`.trainer_state`; no pickle) and
``state.json``: the ``run`` settings it must be resumed with, the position reached and the
history so far; with a validation split also ``best.params``, the best epoch's parameters.
It is written atomically: an interrupted save leaves the previous one whole.
"""
import os

import mxnet as mx

from ..common import storage
from . import trainer_state
from ..common.errors import PretrainedError, cut, shorten


class Checkpoint:
    """A resumable state in the folder ``path`` for a run described by ``run`` (a dict).

    Parameters
    ----------
    path : folder of the checkpoint (None: checkpoints are off)
    run : the settings a resumed run must share with the one that wrote the checkpoint
        (data, model, lengths, batch size, seed, ...); numbers like the epoch count or the
        learning rate are not part of it
    """

    def __init__(self, path, run):
        self.path, self.run = path, run

    def exists(self):
        return self.path is not None and os.path.isfile(os.path.join(self.path, 'state.json'))

    def save(self, net, trainer, best_params=None, **state):
        """Write ``net``'s parameters, ``trainer``'s states, ``state`` (JSON values) and
        ``best_params`` (name -> array, the best epoch's; :meth:`load_best`); ``DivergedError``
        instead if a weight is not finite."""
        at = ', '.join(f'{k} {state[k]}' for k in ('step', 'epoch', 'batch') if k in state)
        storage.check_finite_weights(net, self.path, f' at {at}' if at else '')
        with storage.atomic_path(self.path) as tmp:
            os.makedirs(tmp)
            net.save_parameters(os.path.join(tmp, 'model.params'))
            trainer_state.save(trainer, tmp)
            if best_params:
                mx.nd.save(os.path.join(tmp, 'best.params'),
                           {k: v.as_nd_ndarray() for k, v in best_params.items()})
            storage.write_json(os.path.join(tmp, 'state.json'), dict(state, run=self.run))

    def read_state(self, counters=None, history=()):
        """The saved ``state.json``, checked to be an object with a ``run``, each of
        ``counters`` (``{name: largest or None}``) an integer from 0, and ``history`` an
        object whose keys ``history`` are lists."""
        where = os.path.join(self.path, 'state.json')
        state = storage.read_json(where)
        start_over = f'delete {self.path} to start over'
        if not isinstance(state, dict) or not isinstance(state.get('run'), dict):
            raise PretrainedError(f'{where}: not a checkpoint state (no "run" object); {start_over}')
        for name, largest in (counters or {}).items():
            value = state.get(name)
            if (isinstance(value, bool) or not isinstance(value, int) or value < 0
                    or (largest is not None and value > largest)):
                span = '>= 0' if largest is None else f'in 0..{largest}'
                raise PretrainedError(f'{where}: "{name}" is {shorten(value)}, not an integer '
                                      f'{span}; {start_over}')
        if history and not (isinstance(state.get('history'), dict) and
                            all(isinstance(state['history'].get(k), list) for k in history)):
            raise PretrainedError(f'{where}: "history" is not an object of lists ({", ".join(history)}); '
                                  f'{start_over}')
        return state

    def load(self, net, trainer, devices, lr=None, counters=None, history=(), trusted=False):
        """Check the run settings, load into ``net`` and ``trainer``; returns the saved state.

        Raises ``PretrainedError`` naming every setting that differs, or a field of the state
        that is not what :meth:`read_state` is asked to check. ``lr``: the learning rate to
        continue with (the saved optimizer comes back with its own). A checkpoint written
        before 0.3 keeps its optimizer in a pickle (``trainer.states``), which can run code
        when loaded: it is refused unless ``trusted`` (``--trust-checkpoint``).
        """
        state = self.read_state(counters, history)
        diff = [f'{cut(str(k), 60)}={shorten(v)} (now {shorten(self.run.get(k))})'
                for k, v in state['run'].items() if self.run.get(k) != v]
        diff += [f'{k} unset (now {shorten(v)})' for k, v in self.run.items() if k not in state['run']]
        if diff:
            raise PretrainedError(
                f'{self.path}: cannot resume, the checkpoint was written with {"; ".join(diff)}. '
                'Use the same settings, or another output folder to start over')
        pickled = not os.path.isfile(os.path.join(self.path, trainer_state.COUNTS))
        if pickled and not trusted:
            raise PretrainedError(
                f'{self.path}: its optimizer state is a pickle (trainer.states, written before '
                '0.3), and loading a pickle can run any code it holds: resume it only if you '
                'trust where the folder came from, with --trust-checkpoint (docs/bad-input.md)')
        try:
            net.load_parameters(os.path.join(self.path, 'model.params'), ctx=devices)
            if pickled:
                trainer.load_states(os.path.join(self.path, 'trainer.states'))
            else:
                trainer_state.load(trainer, self.path)
        except Exception as e:  # MXNet raises its own error types for corrupt files
            raise PretrainedError(f'{self.path}: unreadable checkpoint ({type(e).__name__}: '
                                  f'{str(e).splitlines()[0][:200]}); delete it to start over') from None
        if lr is not None and trainer.optimizer.lr_scheduler is None:
            trainer.set_learning_rate(lr)  # a schedule restores its own from the step count
        return state

    def load_best(self, device):
        """The best epoch's parameters saved with the checkpoint (name -> array on ``device``),
        or None. Raises ``PretrainedError`` for an unreadable file."""
        path = os.path.join(self.path, 'best.params')
        if not os.path.isfile(path):
            return None
        try:
            return {k: v.as_np_ndarray().as_in_context(device)
                    for k, v in mx.nd.load(path).items()}
        except Exception as e:  # MXNet raises its own error types for corrupt files
            raise PretrainedError(f'{path}: unreadable ({type(e).__name__}: '
                                  f'{str(e).splitlines()[0][:200]}); delete {self.path} to start '
                                  'over') from None
