"""The book's Adam Trainer over the trainable parameters, with BERT's recipe and clipping."""
import dataclasses
from typing import Optional

import mxnet as mx
from mxnet import gluon

from ..common.errors import ConfigError
from .optimizer import FusedAdam, LazyEmbeddingAdam


def check_trainable_graph(net):
    """Raise ``ConfigError`` if a block of ``net`` is hybridized with a subgraph backend
    (``hybridize(backend='MKLDNN')``, ``optimize_for``): such graphs are inference-only (a
    oneDNN-fused ``FullyConnected`` gives its weight a zero gradient, and dropout is gone;
    issue 21). Fast inference copies (``inference/fast.py``) keep them away from training."""
    stack = [('net', net)]
    while stack:
        name, block = stack.pop()
        backend = getattr(block, '_backend', None)
        if backend:
            raise ConfigError(f'{name} is hybridized with the {backend} subgraph backend, which '
                              'is inference-only (its fused weights get no gradient): train the '
                              'network without it, and predict with inference_net(net)')
        stack.extend((f'{name}.{k}', child) for k, child in block._children.items())


def freeze(net, num_trainable_blocks=None):
    """Train the task layer plus the top ``num_trainable_blocks`` encoder blocks; freeze the rest.

    ``None`` trains everything (the book). Frozen parameters get ``grad_req='null'``: no
    gradient buffer, no update. Returns the dict of trainable parameters for the Trainer.
    """
    params = net._collect_params_with_prefix()
    if num_trainable_blocks is not None:
        num_blks = len(net.encoder.blks)
        if not 0 <= num_trainable_blocks <= num_blks:
            raise ValueError(f'num_trainable_blocks={num_trainable_blocks}: must be in 0..{num_blks}')
        trainable = tuple(f'encoder.blks.{i}.' for i in range(num_blks - num_trainable_blocks, num_blks))
        for name, param in params.items():
            if name.startswith('encoder.') and not name.startswith(trainable):
                param.grad_req = 'null'
    return {name: p for name, p in params.items() if p.grad_req != 'null'}


def clip_global_norm(trainer, devices, max_norm):
    """Clip the global L2 norm of every device's (reduced) gradients at ``max_norm``.

    The factor ``min(1, max_norm / (norm + 1e-6))`` is a (1,) device scalar from one
    ``multi_sum_sq`` kernel per device (``gluon.utils.clip_global_norm`` takes legacy NDArrays
    and syncs the host). A :class:`~gluon_bertft.training.optimizer.FusedAdam` takes it into its update
    kernel; for other optimizers the gradients are multiplied by it.
    """
    params = [p for p in trainer._params if p.grad_req != 'null']
    scales = {}
    for d in devices:
        grads = [p.grad(d) for p in params]
        classic, step = [g.as_nd_ndarray() for g in grads], FusedAdam.MAX_TENSORS
        # per chunk (n,) -> (1,); summed: the squared global norm, (1,)
        squares = mx.nd.add_n(*[mx.nd.multi_sum_sq(*classic[i:i + step],
                                                   num_arrays=len(classic[i:i + step])).sum()
                                for i in range(0, len(classic), step)])
        scales[d] = mx.nd.clip(max_norm / (mx.nd.sqrt(squares) + 1e-6), 0.0, 1.0)
        if not isinstance(trainer.optimizer, FusedAdam):
            for g in grads:
                g *= scales[d].as_np_ndarray()
    if isinstance(trainer.optimizer, FusedAdam):
        trainer.optimizer.scale_grads(scales)


@dataclasses.dataclass
class Recipe:
    """How :func:`make_trainer` updates: the fields are its keyword options."""
    lazy_embedding: bool = False
    multi_precision: bool = False
    weight_decay: float = 0.0
    schedule: Optional[tuple] = None
    clip_grad: Optional[float] = None
    fused: bool = True


def make_trainer(net, lr=1e-4, num_trainable_blocks=None, kvstore='device', **recipe):
    """The book's Adam Trainer (lr 1e-4) over the parameters :func:`freeze` leaves trainable.

    ``recipe``: the fields of :class:`Recipe` (an unknown name is a ``TypeError``).

    ``lazy_embedding``: update only the token-embedding rows each batch uses
    (:class:`~gluon_bertft.training.optimizer.LazyEmbeddingAdam`): faster, but not the book's Adam.
    ``kvstore``: a name or a ``KVStore``. On a distributed one (``dist_sync``,
    ``dist_device_sync``) the servers sum the workers' gradients and every worker applies the
    same Adam update to the sum (``update_on_kvstore=False``: the optimizer state stays on the
    worker, where it can be saved); ``rescale_grad = 1 / num_workers`` makes ``step(local
    batch)`` divide by the global batch. The summed gradient has rows of every worker's batch,
    so the embedding is then updated in full. ``multi_precision``: float32 master weights for a
    float16 network.

    BERT's fine-tuning recipe (Devlin et al., 2019; Hugging Face's ``Trainer``), off by
    default: ``weight_decay`` is AdamW's decoupled decay on every weight but the biases and the
    LayerNorm scales and shifts; ``schedule=(warmup_steps, total_steps)`` raises the learning
    rate linearly from 0 over ``warmup_steps`` and lowers it linearly to 0 at ``total_steps``
    (``mx.lr_scheduler.PolyScheduler``); ``clip_grad`` makes the loop clip the global
    gradient norm, which needs the gradients reduced before the update.

    With ``weight_decay`` or ``clip_grad``, ``fused`` (default) runs the update in
    MXNet's multi-tensor kernel with the decay and the clipping factor inside it
    (:class:`~gluon_bertft.training.optimizer.FusedAdam`, the same update within float32
    rounding); ``False``: one ``adam_update`` per parameter, decay and clipping as separate
    passes. The book's Adam (neither) is always ``adam_update``, MXNet's ``Adam`` bit for bit.

    Raises ``ConfigError`` for a network with an inference-only graph
    (:func:`check_trainable_graph`).
    """
    r = Recipe(**recipe)
    check_trainable_graph(net)
    if isinstance(kvstore, str) and kvstore.startswith('dist'):
        kvstore = mx.kv.create(kvstore)
    dist = isinstance(kvstore, mx.kv.KVStore) and 'dist' in kvstore.type
    params = freeze(net, num_trainable_blocks)
    scheduler = None
    if r.schedule is not None:
        warmup_steps, total_steps = r.schedule
        scheduler = mx.lr_scheduler.PolyScheduler(
            max_update=max(1, total_steps), base_lr=lr, pwr=1, final_lr=0.0,
            warmup_steps=warmup_steps, warmup_begin_lr=0.0, warmup_mode='linear')
    if r.weight_decay:
        for name, p in params.items():
            if name.endswith(('bias', 'gamma', 'beta')):  # biases and LayerNorm: no decay
                p.wd_mult = 0.0
    fused = r.fused and bool(r.weight_decay or r.clip_grad)
    optimizer = (FusedAdam if fused else LazyEmbeddingAdam)(
        learning_rate=lr, multi_precision=r.multi_precision,
        rescale_grad=1 / kvstore.num_workers if dist else 1.0, wd=r.weight_decay,
        decoupled_wd=bool(r.weight_decay), lr_scheduler=scheduler)
    trainer = gluon.Trainer(params, optimizer, kvstore=kvstore,
                            update_on_kvstore=False if dist or r.clip_grad else None)
    embedding = getattr(getattr(net, 'encoder', None), 'token_embedding', None)
    if r.lazy_embedding and not dist and embedding is not None:
        optimizer.mark_lazy([embedding.weight])
    if dist:
        _share_initial_weights(trainer)
    return trainer


def _share_initial_weights(trainer):
    """Copy rank 0's parameters to the workers now and wait. The Trainer would do it lazily
    in its first step, where the asynchronous pulls race with the pushes of the first
    gradients: a worker could pull the summed gradient as its weights."""
    trainer._init_kvstore()
    trainer._init_params()
    mx.nd.waitall()
