"""The one training loop: epochs of steps, with callbacks for everything else.

:class:`Loop` is the book's ``train_ch13`` with its body split the way d2l and Hugging Face
split it: a step (:class:`~gluon_bertft.training.step.TrainStep`, the book's
``train_batch_ch13``) and callbacks (:mod:`.callbacks`, Hugging Face's ``TrainerCallback``).
Fine-tuning (:func:`train`, :func:`gluon_bertft.finetune.finetune`) and pretraining
(:func:`gluon_bertft.pretrain.pretrain`) run on it; they differ in the step's forward and
in their callbacks.

Differences from ``d2l.train_ch13``, none of which changes what is learned: loss and accuracy
are summed on the devices and read once per log interval instead of after every batch; a
validation split can be reported, its best epoch kept and training stopped early; a run
resumes at any step; the history is returned.
"""
import dataclasses
from typing import Callable, Optional

from .callbacks import (Animator, EpochLog, KeepBest, ProgressBar, SupervisedMetrics,
                        TestAccuracy, Validation)
from .devices import default_devices, split_batch
from .evaluate import num_correct
from .step import TrainStep, supervised_forward

HISTORY = ('train_loss', 'train_acc', 'test_acc', 'valid', 'examples_per_sec')


@dataclasses.dataclass
class LoopState:
    """Where the loop stands: ``epoch`` epochs and ``batch`` batches of the next one done."""
    num_epochs: int
    num_batches: int
    history: dict
    epoch: int = 0
    batch: int = 0
    max_steps: Optional[int] = None
    log: Callable = print
    stop: bool = False
    since_log: int = 0
    logs: dict = dataclasses.field(default_factory=dict)  # the last log point's values
    line: str = ''  # the epoch's line, as the callbacks build it
    totals: dict = dataclasses.field(default_factory=dict)

    @property
    def step(self):
        """Optimizer steps done in all."""
        return self.epoch * self.num_batches + self.batch


class Loop:
    """``step`` over ``batches`` for ``state.num_epochs`` epochs (or ``state.max_steps``
    steps), calling ``callbacks`` (:mod:`.callbacks`) in order.

    ``batches`` must have ``len`` and ``iter_from(epoch, first_batch)`` (the batches of an
    epoch from a given one on, in the order an uninterrupted run draws them). A log point comes
    every ``log_every`` steps and, with ``epoch_logs``, at the end of every epoch (where the
    count restarts).
    """

    def __init__(self, step, batches, callbacks, log_every, epoch_logs=True):
        self.step, self.batches, self.callbacks = step, batches, list(callbacks)
        self.log_every, self.epoch_logs = log_every, epoch_logs

    def emit(self, event, *args):
        for callback in self.callbacks:
            getattr(callback, event)(*args)

    def run(self, state):
        """Train from ``state`` (a resumed run: its epoch and batch) and return it."""
        state.stop = state.stop or (state.max_steps is not None and state.step >= state.max_steps)
        self.emit('on_train_begin', state)
        while not state.stop and state.epoch < state.num_epochs:
            self.emit('on_epoch_begin', state)
            self.run_epoch(state)
            if state.batch < state.num_batches:  # stopped inside the epoch
                break
            self.emit('on_epoch_end', state)
            self.emit('on_evaluate', state)
            state.epoch, state.batch = state.epoch + 1, 0
            self.emit('on_save', state)  # the end of an epoch, as (epoch + 1, 0)
        self.emit('on_train_end', state)
        return state

    def run_epoch(self, state):
        if self.epoch_logs:
            state.since_log = 0
        for batch in self.batches.iter_from(state.epoch, state.batch):
            out = self.step(batch)
            state.batch, state.since_log = state.batch + 1, state.since_log + 1
            self.emit('on_step_end', state, out)
            last = state.max_steps is not None and state.step >= state.max_steps
            if (state.since_log == self.log_every or last
                    or (self.epoch_logs and state.batch == state.num_batches)):
                self.emit('on_log', state)  # the only host synchronisation
                state.since_log = 0
            if state.batch < state.num_batches:
                self.emit('on_save', state)
            state.stop = state.stop or last
            if state.stop:
                return


@dataclasses.dataclass
class TrainOptions:
    """The options of :func:`train` beyond the book's signature.

    accuracy : ``(y_hat, y) -> (correct, count)`` device scalars of one shard (the epoch's
        "acc"; default: argmax equals the label)
    validate : ``net -> (name, value)``, the task's metric on a validation split (higher is
        better), reported every epoch; with ``keep_best`` the best epoch's parameters are
        restored at the end (``kept``: its value and parameters, kept across a resume)
    animator : a ``d2l.Animator`` (notebooks); progress : the ``tqdm`` bar (None: for epochs
        of 20 batches or more); log : where lines go
    loss_scale, clip_grad : see :class:`~gluon_bertft.training.step.TrainStep`
    forward : the step's forward (default: :func:`~gluon_bertft.training.step.supervised_forward`
        of ``net``, ``loss``, ``devices``, ``split_f``; distillation gives its own)
    callbacks : more :mod:`.callbacks`, run after the default ones
    start, history : a resumed run's ``(epoch, batch)`` and the history of the epochs before
    """
    accuracy: Callable = num_correct
    validate: Optional[Callable] = None
    keep_best: bool = True
    kept: Optional[dict] = None
    animator: object = None
    progress: Optional[bool] = None
    log: Callable = print
    loss_scale: float = 1.0
    clip_grad: Optional[float] = None
    forward: Optional[Callable] = None
    callbacks: tuple = ()
    start: tuple = (0, 0)
    history: Optional[dict] = None


def train(net, train_iter, test_iter, loss, trainer, num_epochs, devices=None,
          split_f=split_batch, **options):
    """Fine-tune ``net`` as the book's ``train_ch13`` does; returns the history.

    Each epoch prints the book's line (``loss ..., train acc ..., test acc ...``) and the end
    ``... examples/sec on [...]``. The loop does not know the task: ``loss(y_hat, y)`` gives
    per-example losses, ``split_f(features, labels, devices)`` shards a batch. ``test_iter=None``
    skips the test pass (a distributed run's workers but rank 0). ``options``: the fields of
    :class:`TrainOptions` (an unknown name is a ``TypeError``).

    The history: per epoch ``train_loss``, ``train_acc``, ``test_acc``, ``valid``,
    ``examples_per_sec``; ``valid_metric`` and ``best_epoch`` with a validation.
    """
    o = TrainOptions(**options)
    devices = devices or default_devices()
    num_batches = len(train_iter)
    history = o.history or {k: [] for k in HISTORY}
    metrics = SupervisedMetrics(devices, o.accuracy)
    callbacks = [metrics, ProgressBar(o.progress)]
    if test_iter is not None:
        callbacks.append(TestAccuracy(net, test_iter, devices, split_f, o.accuracy))
    if o.validate is not None:
        callbacks.append(Validation(net, o.validate))
    if o.animator is not None:
        callbacks.append(Animator(o.animator, metrics))
    callbacks.append(EpochLog(devices, defer=o.animator is not None))
    if o.validate is not None and o.keep_best:
        callbacks.append(KeepBest(net, devices[0], o.kept))
    forward = o.forward or supervised_forward(net, loss, devices, split_f)
    step = TrainStep(trainer, forward, devices, o.loss_scale, o.clip_grad)
    loop = Loop(step, train_iter, callbacks + list(o.callbacks),
                log_every=max(1, min(50, num_batches // 5)))
    state = LoopState(num_epochs, num_batches, history, *o.start, log=o.log)
    return loop.run(state).history
