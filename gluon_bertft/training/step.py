"""One optimizer step, the book's ``train_batch_ch13``: forward and loss on every device's
shard, backward, update. Fine-tuning and pretraining differ only in their ``forward``.

A forward maps a batch to a :class:`StepOutput`: the losses the backward pass starts from (one
array per device), the normalizer the update divides the summed gradient by (fine-tuning: the
batch size, the losses being per example; pretraining: 1, its losses being means), and what
the callbacks read (predictions, labels, the token ids of the batch).
"""
import collections

from mxnet import autograd

from .devices import batch_len, split_batch
from .trainer import clip_global_norm

StepOutput = collections.namedtuple('StepOutput', 'losses normalizer preds labels tokens extras',
                                    defaults=(None, None, None, None))


def supervised_forward(net, loss, devices, split_f=split_batch):
    """The forward of fine-tuning: ``features, labels -> StepOutput`` with per-example losses
    ``loss(net(X), y)`` on each device's shard (``split_f``) and the batch size as normalizer."""
    def forward(batch):
        features, labels = batch
        X_shards, y_shards = split_f(features, labels, devices)
        preds = [net(X) for X in X_shards]
        losses = [loss(p, y) for p, y in zip(preds, y_shards)]
        return StepOutput(losses, batch_len(labels), preds, y_shards, features[0])
    return forward


class TrainStep:
    """Forward under ``autograd.record``, backward, update: ``step(batch) -> StepOutput``.

    Parameters
    ----------
    trainer : a ``gluon.Trainer`` (:func:`~gluon_bertft.training.trainer.make_trainer`)
    forward : ``batch -> StepOutput`` (:func:`supervised_forward`, or pretraining's)
    devices : the contexts the batch is split over
    loss_scale : the backward pass runs on the losses times this, and the update divides it
        out (float16, :mod:`.precision`)
    clip_grad : clip the global L2 norm of each step's gradients (of the mean over the batch)
        at this; the trainer must be made with ``clip_grad``
    """

    def __init__(self, trainer, forward, devices, loss_scale=1.0, clip_grad=None):
        self.trainer, self.forward, self.devices = trainer, forward, devices
        self.loss_scale, self.clip_grad = loss_scale, clip_grad

    def __call__(self, batch):
        with autograd.record():
            out = self.forward(batch)
            scaled = ([l * self.loss_scale for l in out.losses] if self.loss_scale != 1
                      else out.losses)
        autograd.backward(scaled)
        self.update(out)
        return out

    def update(self, out):
        """Apply the gradients, divided by ``out.normalizer`` (and the loss scale)."""
        trainer, scale = self.trainer, out.normalizer * self.loss_scale
        before_step = getattr(trainer.optimizer, 'before_step', None)
        if before_step is not None:  # LazyEmbeddingAdam: the rows of the embedding to update
            before_step(out.tokens)
        if self.clip_grad:
            trainer.allreduce_grads()
            clip_global_norm(trainer, self.devices, self.clip_grad * scale)
            trainer.update(scale, ignore_stale_grad=True)
        else:
            trainer.step(scale, ignore_stale_grad=True)
