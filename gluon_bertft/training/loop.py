"""The fine-tuning loop (the book's ``train_ch13`` over a list of devices).

Differences from ``d2l.train_ch13``, none of which changes what is learned: loss and
accuracy are summed on the devices and read once per log interval instead of after every
batch; a validation split can be reported and its best epoch kept; the history is returned.
"""
import math
import time

import mxnet as mx
from mxnet import autograd, np

from ..common.errors import DivergedError
from .devices import batch_len, default_devices, split_batch
from .evaluate import _ratio, evaluate_accuracy, num_correct, progress_bar
from .optimizer import LazyEmbeddingAdam
from .trainer import clip_global_norm

ETA_NOTICE_SECONDS = 600  # a run expected to take longer says so after its first interval


def train(net, train_iter, test_iter, loss, trainer, num_epochs, devices=None,
          split_f=split_batch, validate=None, keep_best=True, animator=None, progress=None,
          log=print, accuracy=num_correct, resume_at=(0, 0), history=None, step_done=None,
          loss_scale=1.0, clip_grad=None, kept=None):
    """Fine-tune ``net`` as the book's ``train_ch13`` does, returning the history.

    Each epoch prints the book's line (``loss ..., train acc ..., test acc ...``) and the
    final ``... examples/sec on [...]`` line. ``validate(net) -> (name, value)`` (higher is
    better; the task's metric on a validation split) is reported every epoch and, with
    ``keep_best``, the parameters of the best epoch are restored at the end. ``animator`` is
    a ``d2l.Animator`` (notebooks); ``progress`` shows a ``tqdm`` bar with an ETA on stderr
    (default: for epochs of 20 batches or more). A run whose first interval predicts more
    than :data:`ETA_NOTICE_SECONDS` says how long it will take.

    The loop does not know the task: ``loss(y_hat, y)`` gives per-example losses and
    ``accuracy(y_hat, y)`` ``(correct, count)`` device scalars for one device's shard;
    ``split_f(features, labels, devices)`` shards a batch (:func:`~gluon_bertft.training.devices.split_batch`).

    ``test_iter=None`` skips evaluation (the workers other than rank 0 of a distributed run).
    ``step_done(epoch, batch, history)`` is called after every optimizer step (``batch``
    batches of ``epoch`` done) and after every epoch's evaluation as ``(epoch + 1, 0)``: the
    points a checkpoint can be taken at. Resuming from one, ``resume_at=(epoch, batch)`` with
    the ``history`` of the epochs before: the batches before it are drawn again, so that a
    shuffling iterator repeats its order, but not trained. ``kept``: a dict that ``train``
    keeps the best epoch in (``value``, ``params``: name -> array), for a checkpoint to save
    and a resumed run to pass back, so that ``keep_best`` also weighs the epochs before it. ``loss_scale``: the backward pass runs on the losses times this and
    the step divides it out (float16, :mod:`.precision`). ``clip_grad``: rescale the
    gradients of each step so that their global L2 norm (of the mean over the batch) is at most
    this (the trainer must be made with ``clip_grad``).
    """
    devices = devices or default_devices()
    num_batches = len(train_iter)
    log_every = max(1, min(50, num_batches // 5))
    history = history or {k: [] for k in ('train_loss', 'train_acc', 'test_acc', 'valid',
                                          'examples_per_sec')}
    kept = {} if kept is None else kept
    best, best_params, epoch_lines = kept.get('value'), kept.get('params'), []
    train_time, train_examples, noticed = 0.0, 0, False
    for _ in range(resume_at[0]):  # replay the shuffles of the finished epochs
        for _ in train_iter:
            pass
    for epoch in range(resume_at[0], num_epochs):
        loss_sum = [np.zeros((), ctx=d) for d in devices]
        correct = [np.zeros((), ctx=d) for d in devices]
        predicted = [np.zeros((), ctx=d) for d in devices]
        count, start = 0, time.time()
        bar = progress_bar(num_batches, f'epoch {epoch + 1}/{num_epochs}', progress)
        for i, (features, labels) in enumerate(train_iter):
            if epoch == resume_at[0] and i < resume_at[1]:
                bar.update(1)
                continue
            X_shards, y_shards = split_f(features, labels, devices)
            with autograd.record():
                preds = [net(X) for X in X_shards]
                ls = [loss(p, y) for p, y in zip(preds, y_shards)]
                scaled = [l * loss_scale for l in ls] if loss_scale != 1 else ls
            autograd.backward(scaled)
            batch_size = batch_len(labels)
            if isinstance(trainer.optimizer, LazyEmbeddingAdam) and trainer.optimizer.lazy_indices:
                trainer.optimizer.use_rows(features[0])  # the token ids: the rows to update
            if clip_grad:
                trainer.allreduce_grads()
                clip_global_norm(trainer, devices, clip_grad * batch_size * loss_scale)
                trainer.update(batch_size * loss_scale, ignore_stale_grad=True)
            else:
                trainer.step(batch_size * loss_scale, ignore_stale_grad=True)
            for k, (l, p, y) in enumerate(zip(ls, preds, y_shards)):
                c, n = accuracy(p, y)
                loss_sum[k] = loss_sum[k] + l.sum()
                correct[k] = correct[k] + c
                predicted[k] = predicted[k] + n
            count += batch_size
            if (i + 1) % log_every == 0 or i + 1 == num_batches:
                # the only host synchronisation inside the epoch
                running = sum(float(s) for s in loss_sum) / count
                check_finite(running, epoch * num_batches + i + 1,
                             f' (epoch {epoch + 1}, batch {i + 1})')
                bar.set_postfix(loss=f'{running:.3f}', refresh=False)
                bar.update((i + 1) - bar.n)
                if not noticed:
                    noticed = _eta_notice(time.time() - start, i + 1 - (resume_at[1] if epoch == resume_at[0] else 0),
                                          num_batches * (num_epochs - epoch) - (i + 1), log)
                if animator is not None:
                    animator.add(epoch + (i + 1) / num_batches,
                                 (running, _ratio(correct, predicted), None))
            if step_done:
                step_done(epoch, i + 1, history)
        mx.nd.waitall()
        bar.close()
        elapsed = time.time() - start
        train_time, train_examples = train_time + elapsed, train_examples + count
        history['train_loss'].append(sum(float(s) for s in loss_sum) / count)
        check_finite(history['train_loss'][-1], (epoch + 1) * num_batches, f' (epoch {epoch + 1})')
        history['train_acc'].append(_ratio(correct, predicted))
        history['examples_per_sec'].append(count / elapsed)
        line = f'loss {history["train_loss"][-1]:.3f}, train acc {history["train_acc"][-1]:.3f}'
        if test_iter is not None:
            history['test_acc'].append(evaluate_accuracy(net, test_iter, devices, split_f, accuracy))
            line += f', test acc {history["test_acc"][-1]:.3f}'
        if validate is not None:
            name, value = validate(net)
            history['valid'].append(value)
            history['valid_metric'] = name
            line += f', valid {name} {value:.3f}'
            if keep_best and value == value and (best is None or value > best):  # nan: undefined
                best, history['best_epoch'] = value, epoch + 1
                best_params = {n: p.data(devices[0]).copy()
                               for n, p in net._collect_params_with_prefix().items()}
                kept.update(value=best, params=best_params)
        if animator is not None and test_iter is not None:
            animator.add(epoch + 1, (None, None, history['test_acc'][-1]))
        # d2l.Animator clears the cell's output at each point: print the lines after it is done
        (epoch_lines.append if animator is not None else log)(f'epoch {epoch + 1}/{num_epochs}: {line}')
        if step_done:
            step_done(epoch + 1, 0, history)
    for line in epoch_lines:
        log(line)
    log(f'{train_examples / max(train_time, 1e-9):.1f} examples/sec on {str(devices)}')
    if best_params is not None and history['best_epoch'] != num_epochs:
        for name, param in net._collect_params_with_prefix().items():
            param.set_data(best_params[name])
        log(f'kept epoch {history["best_epoch"]} (best valid {history["valid_metric"]} {best:.3f})')
    return history


def check_finite(loss, step, detail='', hint='Lower --lr, or use --clip-grad 1.0 / --warmup 0.1'):
    """Raise ``DivergedError`` at a sync point of a loop (fine-tuning, pretraining) when the
    running loss is not finite, naming the step (``detail``: e.g. its epoch and batch)."""
    if not math.isfinite(loss):
        raise DivergedError(f'the training loss became {loss} by step {step}{detail}: training '
                            f'diverged; nothing more was saved. {hint}')


def _eta_notice(seconds, batches_done, batches_left, log):
    """Log how long the rest of the run will take when that is over ``ETA_NOTICE_SECONDS``."""
    if batches_done <= 0:
        return False
    left = seconds / batches_done * batches_left
    if left > ETA_NOTICE_SECONDS:
        log(f'note: at this speed the run needs about {left / 3600:.1f} more hours '
            f'({batches_left} batches); for a shorter job use --max-examples N or fewer '
            f'--epochs (docs/speed.md)')
    return True


