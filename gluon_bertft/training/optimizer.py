"""Adam that updates only the token-embedding rows a batch uses; BERT's recipe in one kernel.

The book's Adam rewrites the whole 20,256 x 256 embedding table of ``bert.small`` (weights
and both moments) every step, although a batch of SNLI pairs uses a few hundred of its rows.
MXNet's cure, row-sparse gradients with ``lazy_update``, is refused in numpy mode
(``mxnet.numpy.zeros does not support stype = row_sparse``), so this optimizer applies the
same lazy update to the dense gradient's used rows: for those rows it is Adam; the other rows
and their moments stay as they are (plain Adam would decay their moments and keep moving
them). All other parameters get plain Adam.

:class:`FusedAdam` runs BERT's recipe (AdamW and global-norm clipping) inside MXNet's
multi-tensor AdamW kernel.

``decoupled_wd``: weight decay as AdamW applies it (Loshchilov & Hutter, 2019; Hugging Face's
BERT recipe): every step multiplies the weights by ``1 - lr * wd`` instead of adding
``wd * w`` to the gradient, which is what MXNet 1.9's ``Adam`` does and which has no AdamW.
"""
import math

import mxnet as mx
import numpy as onp
from mxnet import np, optimizer


class LazyEmbeddingAdam(optimizer.Adam):
    """:class:`mxnet.optimizer.Adam` with MXNet's lazy row update for the embedding parameters.

    ``lazy_indices``: the Trainer's indices of the embedding weights (see
    :meth:`mark_lazy`). Before each ``trainer.step`` the loop calls :meth:`use_rows` with the
    batch's token ids; without that (or with ``None``) every parameter gets plain Adam.
    """

    def __init__(self, lazy_indices=(), decoupled_wd=False, **kwargs):
        super().__init__(**kwargs)
        self.decoupled_wd = decoupled_wd
        self.lazy_indices = set(lazy_indices)
        self._rows, self._rows_on = None, {}

    def mark_lazy(self, params):
        """Update the parameters in ``params`` lazily (after the Trainer set ``param_dict``)."""
        self.lazy_indices = {i for i, p in self.param_dict.items() if any(p is q for q in params)}

    def before_step(self, token_ids):
        """Called by :class:`~gluon_bertft.training.step.TrainStep` before each update with
        the batch's token ids: the rows of the lazy parameters, if any."""
        if self.lazy_indices:
            self.use_rows(token_ids)

    def use_rows(self, token_ids):
        """The rows of the next step: the distinct ids in ``token_ids`` (host or mxnet arrays)."""
        if token_ids is None:
            self._rows = None
        else:
            ids = token_ids.asnumpy() if hasattr(token_ids, 'asnumpy') else onp.asarray(token_ids)
            self._rows = onp.unique(ids.astype(onp.int64))
        self._rows_on = {}

    def _get_wd(self, index):
        return 0.0 if self.decoupled_wd else super()._get_wd(index)

    def _decay(self, index, weight):
        """AdamW's decoupled decay of ``weight`` (before the Adam step, as AdamW does), at the
        scheduled learning rate of that step (the update count it is about to reach)."""
        wd = super()._get_wd(index)
        if self.decoupled_wd and wd:
            num_update = self.num_update
            self.num_update = max(num_update,
                                  self._index_update_count.get(index, self.begin_num_update) + 1)
            lr = self._get_lr(index)
            self.num_update = num_update
            weight[:] = weight * (1. - lr * wd)

    def update_multi_precision(self, index, weight, grad, state):
        if self.multi_precision and onp.dtype(weight.dtype) == onp.float16:
            self._decay(index, state[0])  # the float32 master weights
        else:
            self._decay(index, weight)
        self._decayed = True
        super().update_multi_precision(index, weight, grad, state)
        self._decayed = False

    def update(self, index, weight, grad, state):
        if not getattr(self, '_decayed', False):
            self._decay(index, weight)
        if index not in self.lazy_indices or self._rows is None:
            return super().update(index, weight, grad, state)
        self._update_count(index)
        t = self._index_update_count[index]
        lr = self._get_lr(index) * math.sqrt(1. - self.beta2 ** t) / (1. - self.beta1 ** t)
        wd = self._get_wd(index)
        if weight.context not in self._rows_on:
            self._rows_on[weight.context] = np.array(self._rows, dtype='int64', ctx=weight.context)
        rows = self._rows_on[weight.context]
        w, g = weight.as_np_ndarray(), grad.as_np_ndarray()
        mean, var = (s.as_np_ndarray() for s in state)
        w_rows = w[rows]  # (rows, num_hiddens): the only rows read or written
        g_rows = g[rows] * self._row_rescale(weight.context) + wd * w_rows
        if self.clip_gradient:
            g_rows = np.clip(g_rows, -self.clip_gradient, self.clip_gradient)
        m_rows = self.beta1 * mean[rows] + (1. - self.beta1) * g_rows
        v_rows = self.beta2 * var[rows] + (1. - self.beta2) * g_rows * g_rows
        mean[rows], var[rows] = m_rows, v_rows
        w[rows] = w_rows - lr * m_rows / (np.sqrt(v_rows) + self.epsilon)
        return None

    def _row_rescale(self, context):
        """The factor of the lazy rows' gradients (a number; a device scalar in FusedAdam)."""
        return self.rescale_grad

    def __getstate__(self):
        state = super().__getstate__()
        state['_rows'], state['_rows_on'] = None, {}  # per-batch, and device arrays
        return state


class FusedAdam(LazyEmbeddingAdam):
    """Adam (AdamW with ``decoupled_wd``) with the decay and a device-side clipping factor
    inside MXNet's kernel: BERT's recipe without extra passes over the parameters.

    ``mx.nd.contrib.multi_adamw_update`` (``multi_mp_adamw_update`` for float16 weights with
    float32 master copies) runs with ``eta = 1``, ``lr`` = Adam's
    ``lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` (as ``mxnet.optimizer.Adam``) and ``wd`` =
    AdamW's ``lr * wd`` (0 on biases and LayerNorm, Loshchilov & Hutter, 2019)::

        w -= 1 * (lr_t * m / (sqrt(v) + epsilon) + lr * wd * w)

    The same update as :class:`LazyEmbeddingAdam` within float32 rounding (the kernel
    arranges the moments as ``beta1 * (m - g) + g``). The recipe's clipping factor of a step is
    a (1,) device scalar (:meth:`scale_grads`, from :func:`~gluon_bertft.training.trainer.clip_global_norm`)
    that the kernel multiplies into ``rescale_grad``: the gradients are not rewritten, the
    weights not decayed in a pass of their own, and the host never waits. The kernel skips a
    step whose factor is not finite (NaN gradients); the loop's loss check then stops the run.

    Measured reasons (``benchmarks/bench_recipe.py --kernels``, 2-core CPU): the single-tensor
    ``adamw_update`` kernel is single-threaded (154 ms for MiniLM's embedding, 11.7 M values,
    against ``adam_update``'s 17 ms); the multi-tensor one is not (20 ms), but its CPU loop runs
    the longest tensor's length over every tensor of a launch (45 of MiniLM's tensors: 111 ms
    in one launch, 33 ms one launch each), so on CPUs each launch takes :data:`PER_LAUNCH`
    ``['cpu']`` tensors (45 on GPUs, MXNet's own cap for LAMB).
    Lazily updated embedding rows (:meth:`mark_lazy`) keep :class:`LazyEmbeddingAdam`'s path,
    with the same factor. Raises ``ValueError`` for coupled (L2) weight decay, which the kernel
    cannot apply.
    """

    PER_LAUNCH = {'cpu': 1, 'gpu': 45}  # tensors per kernel launch, by device type
    MAX_TENSORS = 45  # the Updater's lists, and multi_sum_sq's inputs per launch

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.wd and not self.decoupled_wd:
            raise ValueError('FusedAdam: weight decay must be decoupled (decoupled_wd=True)')
        self.aggregate_num = self.MAX_TENSORS  # the Updater then passes lists of parameters
        self._grad_scale, self._rescale = {}, {}

    def scale_grads(self, scales):
        """Multiply the gradients of the next update by ``scales``: ``{context: (1,) NDArray}``."""
        self._grad_scale, self._rescale = dict(scales), {}

    def _rescale_on(self, context):
        """``rescale_grad`` (the Trainer's 1 / batch) times the step's clipping factor, a (1,)
        NDArray on ``context``, made once per step and device."""
        key = (context, self.rescale_grad)
        if key not in self._rescale:
            scale = self._grad_scale.get(context)
            self._rescale[key] = (mx.nd.full((1,), self.rescale_grad, ctx=context)
                                  if scale is None else scale * self.rescale_grad)
        return self._rescale[key]

    def _row_rescale(self, context):
        return self._rescale_on(context).as_np_ndarray() if self._grad_scale else self.rescale_grad

    def _single(self, index):
        """Parameters that keep the per-parameter path: lazily updated rows."""
        return index in self.lazy_indices and self._rows is not None

    def update_multi_precision(self, index, weight, grad, state):
        if not isinstance(index, (list, tuple)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        multi = []
        for i, w, g, s in zip(index, weight, grad, state):
            if self._single(i):
                LazyEmbeddingAdam.update_multi_precision(self, i, w, g, s)
            else:
                multi.append((i, w, g, s))
        if multi:
            self._multi_update(*zip(*multi))

    def update(self, index, weight, grad, state):  # the per-parameter path's float32 step
        if self._single(index):
            return super().update(index, weight, grad, state)
        self._multi_update([index], [weight], [grad], [state])

    def _multi_update(self, indices, weights, grads, states):
        lrs, wds = [], []
        for i in indices:
            self._update_count(i)
            t = self._index_update_count[i]
            lr = self._get_lr(i)
            lrs.append(lr * math.sqrt(1. - self.beta2 ** t) / (1. - self.beta1 ** t))
            wds.append(lr * optimizer.Adam._get_wd(self, i))
        kwargs = dict(beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon,
                      etas=[1.0] * len(indices), lrs=lrs, wds=wds)
        if self.clip_gradient:
            kwargs['clip_gradient'] = self.clip_gradient
        weights, grads = [_classic(w) for w in weights], [_classic(g) for g in grads]
        context = weights[0].context
        rescale = self._rescale_on(context)
        half = self.multi_precision and weights[0].dtype == onp.float16
        if half:
            means, variances = zip(*(map(_classic, s[1]) for s in states))
            masters = [_classic(s[0]) for s in states]
        else:
            means, variances = zip(*(map(_classic, s) for s in states))
        step = self.PER_LAUNCH.get(context.device_type, self.MAX_TENSORS)
        for k in range(0, len(weights), step):
            part = slice(k, k + step)
            args = dict(kwargs, **{name: kwargs[name][part] for name in ('etas', 'lrs', 'wds')})
            if half:
                mx.nd.contrib.multi_mp_adamw_update(
                    weights[part], grads[part], means[part], variances[part], masters[part],
                    rescale, out=weights[part], **args)
            else:
                mx.nd.contrib.multi_adamw_update(weights[part], grads[part], means[part],
                                                 variances[part], rescale, out=weights[part],
                                                 **args)

    def __getstate__(self):
        state = super().__getstate__()
        state['_grad_scale'], state['_rescale'] = {}, {}  # device arrays of one step
        return state


def _classic(array):
    """The legacy NDArray view of a numpy-mode array (what the ``mx.nd`` kernels take)."""
    return array.as_nd_ndarray() if hasattr(array, 'as_nd_ndarray') else array
