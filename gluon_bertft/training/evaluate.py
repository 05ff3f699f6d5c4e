"""Evaluation and prediction over a list of devices: one host sync per pass, a progress bar."""
import sys

import numpy as onp
from mxnet import np
from tqdm.auto import tqdm

from .devices import split_batch


def _ratio(numerators, denominators):
    return sum(float(x) for x in numerators) / max(1.0, sum(float(x) for x in denominators))


def progress_bar(total, desc, show=None):
    """A ``tqdm`` bar on stderr with an ETA; shown for 20 batches or more unless ``show``."""
    return tqdm(total=total, desc=desc, unit='batch', leave=False, dynamic_ncols=True,
                disable=not (total >= 20 if show is None else show), file=sys.stderr)


def num_correct(y_hat, y):
    """``(correct, count)`` device scalars: rows of ``y_hat`` whose argmax equals ``y`` (no sync)."""
    hits = (y_hat.argmax(axis=1).astype('float32') == y.astype('float32')).astype('float32')
    return hits.sum(), np.array(float(y.shape[0]), ctx=y.ctx)


def evaluate_accuracy(net, data_iter, devices, split_f=split_batch, accuracy=num_correct,
                      progress=None):
    """Accuracy of ``net`` on ``data_iter``, computed over ``devices`` with one host sync.

    ``accuracy(y_hat, y)`` returns ``(correct, count)`` device scalars for one shard.
    """
    correct, count = [], []
    with progress_bar(len(data_iter), 'evaluate', progress) as bar:
        for features, labels in data_iter:
            X_shards, y_shards = split_f(features, labels, devices)
            for X, y in zip(X_shards, y_shards):
                c, n = accuracy(net(X), y)
                correct.append(c)
                count.append(n)
            bar.update(1)
    return _ratio(correct, count)


def predict_outputs(net, batches, devices, progress=None):
    """Host outputs of ``net`` for every example of ``batches`` (an unshuffled ``BatchIter``,
    sorted by length or not), in the dataset's order: one array (or tuple of arrays) per
    example, over the positions of its batch. Shows a progress bar with an ETA for 20 batches
    or more."""
    results = []
    with progress_bar(len(batches), 'predict', progress) as bar:
        for features, labels in batches:
            for X in split_batch(features, labels, devices)[0]:
                y_hat = net(X)
                if isinstance(y_hat, (tuple, list)):
                    results.extend(zip(*[o.asnumpy() for o in y_hat]))
                else:
                    results.extend(y_hat.asnumpy())
            bar.update(1)
    if getattr(batches, 'sort', False):  # length-sorted batches: put the examples back in order
        order = onp.argsort(batches.valid_lens, kind='stable')
        restored = [None] * len(results)
        for position, index in enumerate(order):
            restored[index] = results[position]
        return restored
    return results
