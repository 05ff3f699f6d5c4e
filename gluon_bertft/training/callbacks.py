"""What the loop does besides stepping, one callback a concern (Hugging Face's
``TrainerCallback``): running metrics and the divergence check, the progress bar and ETA, the
test pass, validation, best-epoch keeping, early stopping, the notebook's animator, the epoch
lines, checkpoints and the distributed watchdog.

The loop (:class:`~gluon_bertft.training.loop.Loop`) calls, on every callback in order:
``on_train_begin``; per epoch ``on_epoch_begin``; per step ``on_step_end(state, out)``, then
``on_log`` at each log point (the only host synchronisation inside an epoch) and ``on_save``
(a point a checkpoint can be taken at); at the end of an epoch ``on_epoch_end``,
``on_evaluate`` and ``on_save``; finally ``on_train_end``. ``state`` is the loop's
:class:`~gluon_bertft.training.loop.LoopState`; a callback stops the run by setting
``state.stop``.
"""
import math
import time

import mxnet as mx
from mxnet import np

from ..common.errors import DivergedError
from .evaluate import _ratio, evaluate_accuracy, num_correct, progress_bar

ETA_NOTICE_SECONDS = 600  # a run expected to take longer says so after its first interval


class Callback:
    """Base: every event does nothing."""

    def on_train_begin(self, state): pass
    def on_epoch_begin(self, state): pass
    def on_step_end(self, state, out): pass
    def on_log(self, state): pass
    def on_save(self, state): pass
    def on_epoch_end(self, state): pass
    def on_evaluate(self, state): pass
    def on_train_end(self, state): pass


def check_finite(loss, step, detail='', hint='Lower --lr, or use --clip-grad 1.0 / --warmup 0.1'):
    """Raise ``DivergedError`` at a sync point of a loop (fine-tuning, pretraining) when the
    running loss is not finite, naming the step (``detail``: e.g. its epoch and batch)."""
    if not math.isfinite(loss):
        raise DivergedError(f'the training loss became {loss} by step {step}{detail}: training '
                            f'diverged; nothing more was saved. {hint}')


class SupervisedMetrics(Callback):
    """Fine-tuning's running loss and "acc" (``accuracy(y_hat, y) -> (correct, count)`` device
    scalars), summed on the devices and read at log points; the epoch's ``train_loss``,
    ``train_acc`` and ``examples_per_sec`` in the history; the divergence check."""

    def __init__(self, devices, accuracy=num_correct):
        self.devices, self.accuracy = devices, accuracy

    def on_train_begin(self, state):
        state.totals.update(seconds=0.0, examples=0)

    def on_epoch_begin(self, state):
        zeros = lambda: [np.zeros((), ctx=d) for d in self.devices]
        self.loss_sum, self.correct, self.predicted = zeros(), zeros(), zeros()
        self.count, self.start = 0, time.time()

    def on_step_end(self, state, out):
        for k, (l, p, y) in enumerate(zip(out.losses, out.preds, out.labels)):
            c, n = self.accuracy(p, y)
            self.loss_sum[k] = self.loss_sum[k] + l.sum()
            self.correct[k] = self.correct[k] + c
            self.predicted[k] = self.predicted[k] + n
        self.count += out.normalizer

    def running_acc(self):
        return _ratio(self.correct, self.predicted)

    def on_log(self, state):
        state.logs['loss'] = sum(float(s) for s in self.loss_sum) / self.count
        check_finite(state.logs['loss'], state.step,
                     f' (epoch {state.epoch + 1}, batch {state.batch})')

    def on_epoch_end(self, state):
        mx.nd.waitall()
        elapsed, h = time.time() - self.start, state.history
        state.totals['seconds'] += elapsed
        state.totals['examples'] += self.count
        h['train_loss'].append(sum(float(s) for s in self.loss_sum) / self.count)
        check_finite(h['train_loss'][-1], state.step,
                     f' (epoch {state.epoch + 1})')
        h['train_acc'].append(self.running_acc())
        h['examples_per_sec'].append(self.count / elapsed)
        state.line = f'loss {h["train_loss"][-1]:.3f}, train acc {h["train_acc"][-1]:.3f}'


class ProgressBar(Callback):
    """A ``tqdm`` bar per epoch on stderr with the running loss and an ETA (``show``: None =
    for epochs of 20 batches or more); a run whose first interval predicts more than
    :data:`ETA_NOTICE_SECONDS` says how long it will take."""

    def __init__(self, show=None):
        self.show, self.noticed = show, False

    def on_epoch_begin(self, state):
        self.bar = progress_bar(state.num_batches, f'epoch {state.epoch + 1}/{state.num_epochs}',
                                self.show)
        self.bar.update(state.batch)  # the batches a resumed run skips
        self.first, self.start = state.batch, time.time()

    def on_log(self, state):
        self.bar.set_postfix(loss=f'{state.logs["loss"]:.3f}', refresh=False)
        self.bar.update(state.batch - self.bar.n)
        if not self.noticed:
            left = state.num_batches * (state.num_epochs - state.epoch) - state.batch
            self.noticed = eta_notice(time.time() - self.start, state.batch - self.first, left,
                                      state.log)

    def on_epoch_end(self, state):
        self.bar.close()


def eta_notice(seconds, batches_done, batches_left, log):
    """Log how long the rest of the run will take when that is over ``ETA_NOTICE_SECONDS``;
    False when nothing can be told yet."""
    if batches_done <= 0:
        return False
    left = seconds / batches_done * batches_left
    if left > ETA_NOTICE_SECONDS:
        log(f'note: at this speed the run needs about {left / 3600:.1f} more hours '
            f'({batches_left} batches); for a shorter job use --max-examples N or fewer '
            f'--epochs (docs/speed.md)')
    return True


class TestAccuracy(Callback):
    """The loop's ``test acc`` after every epoch (the book's line)."""

    def __init__(self, net, test_iter, devices, split_f, accuracy=num_correct):
        self.net, self.test_iter, self.devices = net, test_iter, devices
        self.split_f, self.accuracy = split_f, accuracy

    def on_evaluate(self, state):
        value = evaluate_accuracy(self.net, self.test_iter, self.devices, self.split_f,
                                  self.accuracy)
        state.history['test_acc'].append(value)
        state.line += f', test acc {value:.3f}'


class Validation(Callback):
    """``validate(net) -> (name, value)`` (the task's metric on a validation split, higher is
    better) after every epoch: ``valid`` and ``valid_metric`` in the history."""

    def __init__(self, net, validate):
        self.net, self.validate = net, validate

    def on_evaluate(self, state):
        name, value = self.validate(self.net)
        state.history['valid'].append(value)
        state.history['valid_metric'] = name
        state.line += f', valid {name} {value:.3f}'


class KeepBest(Callback):
    """Keep the parameters of the epoch with the best validation value in ``kept`` (``value``,
    ``params``: name -> array; a checkpoint saves them and a resumed run passes them back) and
    restore them at the end. Place it after :class:`Validation` and :class:`EpochLog`."""

    def __init__(self, net, device, kept=None):
        self.net, self.device = net, device
        self.kept = {} if kept is None else kept

    def on_evaluate(self, state):
        value, best = state.history['valid'][-1], self.kept.get('value')
        if value == value and (best is None or value > best):  # nan: undefined, never best
            state.history['best_epoch'] = state.epoch + 1
            params = {n: p.data(self.device).copy()
                      for n, p in self.net._collect_params_with_prefix().items()}
            self.kept.update(value=value, params=params)

    def on_train_end(self, state):
        h = state.history
        if self.kept.get('params') is not None and h['best_epoch'] != len(h['valid']):
            for name, param in self.net._collect_params_with_prefix().items():
                param.set_data(self.kept['params'][name])
            state.log(f'kept epoch {h["best_epoch"]} (best valid {h["valid_metric"]} '
                      f'{self.kept["value"]:.3f})')


def epochs_without_improvement(values, min_delta=0.0):
    """Validation evaluations since the last one that beat the best before it by more than
    ``min_delta`` (higher is better; nan never improves)."""
    best, waited = None, 0
    for value in values:
        if value == value and (best is None or value > best + min_delta):
            best, waited = value, 0
        else:
            waited += 1
    return waited


class EarlyStopping(Callback):
    """Stop after ``patience`` validation evaluations (one per epoch) without an improvement of
    more than ``min_delta``. The count is read from the history's ``valid`` values, which the
    checkpoint saves: a resumed run stops where an unbroken one would."""

    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta

    def due(self, state):
        return epochs_without_improvement(state.history['valid'], self.min_delta) >= self.patience

    def on_train_begin(self, state):
        if state.history['valid'] and self.due(state):
            state.stop = True
            state.log(f'early stopping: stopped after epoch {len(state.history["valid"])} '
                      'before the interruption')

    def on_evaluate(self, state):
        if self.due(state) and state.epoch + 1 < state.num_epochs:
            state.stop = True
            state.history['stopped_epoch'] = state.epoch + 1
            state.log(f'early stopping after epoch {state.epoch + 1}: valid '
                      f'{state.history["valid_metric"]} has not improved by more than '
                      f'{self.min_delta:g} for {self.patience} epochs')


class Animator(Callback):
    """Points of a ``d2l.Animator`` (notebooks): train loss and acc at log points, test acc
    per epoch."""

    def __init__(self, animator, metrics):
        self.animator, self.metrics = animator, metrics

    def on_log(self, state):
        self.animator.add(state.epoch + state.batch / state.num_batches,
                          (state.logs['loss'], self.metrics.running_acc(), None))

    def on_evaluate(self, state):
        if state.history['test_acc']:
            self.animator.add(state.epoch + 1, (None, None, state.history['test_acc'][-1]))


class EpochLog(Callback):
    """The book's line per epoch (``epoch 1/5: loss ..., train acc ..., test acc ...``) and the
    final ``... examples/sec on [...]``. With ``defer`` (a notebook's animator, which clears
    the cell at each point) the epoch lines are printed at the end."""

    def __init__(self, devices, defer=False):
        self.devices, self.defer, self.lines = devices, defer, []

    def on_evaluate(self, state):
        line = f'epoch {state.epoch + 1}/{state.num_epochs}: {state.line}'
        (self.lines.append if self.defer else state.log)(line)

    def on_train_end(self, state):
        for line in self.lines:
            state.log(line)
        t = state.totals
        state.log(f'{t["examples"] / max(t["seconds"], 1e-9):.1f} examples/sec on {str(self.devices)}')


class Checkpointing(Callback):
    """Every ``every`` steps (and, with ``epoch_ends``, after every epoch's evaluation),
    ``save(state)`` (None on the workers that do not write) and ``reseed(step)``: dropout drawn
    from the step, so that a resumed run equals an uninterrupted one. ``last_step``: also at
    the run's last step (pretraining). ``reseed`` also runs when training begins."""

    def __init__(self, every, save=None, reseed=None, epoch_ends=True, last_step=False):
        self.every, self.save, self.reseed = every, save, reseed
        self.epoch_ends, self.last_step = epoch_ends, last_step

    def on_train_begin(self, state):
        if self.reseed:
            self.reseed(state.step)

    def on_save(self, state):
        at_epoch_end = state.batch == 0
        due = self.every and ((self.epoch_ends and at_epoch_end) or state.step % self.every == 0
                              or (self.last_step and state.step == state.max_steps))
        if not due:
            return
        if self.save:
            self.save(state)
        if self.reseed:
            self.reseed(state.step)


class Watchdog(Callback):
    """Tell a distributed run's watchdog after every step that this worker is alive."""

    def __init__(self, watchdog):
        self.watchdog = watchdog

    def on_step_end(self, state, out):
        self.watchdog.beat()
