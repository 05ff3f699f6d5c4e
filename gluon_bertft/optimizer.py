"""Adam that updates only the token-embedding rows a batch uses.

The book's Adam rewrites the whole 20,256 x 256 embedding table of ``bert.small`` (weights
and both moments) every step, although a batch of SNLI pairs uses a few hundred of its rows.
MXNet's cure, row-sparse gradients with ``lazy_update``, is refused in numpy mode
(``mxnet.numpy.zeros does not support stype = row_sparse``), so this optimizer applies the
same lazy update to the dense gradient's used rows: for those rows it is Adam; the other rows
and their moments stay as they are (plain Adam would decay their moments and keep moving
them). All other parameters get plain Adam.

``decoupled_wd``: weight decay as AdamW applies it (Loshchilov & Hutter, 2019; Hugging Face's
BERT recipe): every step multiplies the weights by ``1 - lr * wd`` instead of adding
``wd * w`` to the gradient, which is what MXNet 1.9's ``Adam`` does and which has no AdamW.
"""
import math

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
        """AdamW's decoupled decay of ``weight`` (before the Adam step, as AdamW does)."""
        wd = super()._get_wd(index)
        if self.decoupled_wd and wd:
            weight[:] = weight * (1. - self._get_lr(index) * wd)

    def update_multi_precision(self, index, weight, grad, state):
        if self.multi_precision and weight.dtype.name == 'float16':
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
        g_rows = g[rows] * self.rescale_grad + wd * w_rows
        if self.clip_gradient:
            g_rows = np.clip(g_rows, -self.clip_gradient, self.clip_gradient)
        m_rows = self.beta1 * mean[rows] + (1. - self.beta1) * g_rows
        v_rows = self.beta2 * var[rows] + (1. - self.beta2) * g_rows * g_rows
        mean[rows], var[rows] = m_rows, v_rows
        w[rows] = w_rows - lr * m_rows / (np.sqrt(v_rows) + self.epsilon)
        return None

    def __getstate__(self):
        state = super().__getstate__()
        state['_rows'], state['_rows_on'] = None, {}  # per-batch, and device arrays
        return state
