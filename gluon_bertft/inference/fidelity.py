"""How closely a changed graph (INT8) follows the fp32 one, on the same batches.

Told apart by the outputs' shapes, so one measure serves every head
(:mod:`gluon_bertft.models.heads`):

* (batch, classes), and QA's (batch, seq) start and end scores: distributions over the last
  axis (softmax);
* (batch, seq, tags): a distribution per position, positions past ``valid_len`` left out;
* (batch,): a score (regression).

``agreement`` is the share of distributions whose argmax is the fp32 one's (scores: within
:data:`SCORE_TOLERANCE` of the fp32 scores' standard deviation); ``divergence`` the mean KL
divergence KL(fp32 || changed) in nats (scores: the mean squared difference over the fp32
scores' variance).
"""
import numpy as onp

SCORE_TOLERANCE = 0.05


def _log_softmax(x):
    x = x.astype(onp.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - onp.log(onp.exp(x).sum(axis=-1, keepdims=True))


def _rows(array, lens):
    """(batch, seq, C) -> (valid positions, C) (positions < valid_len); others unchanged."""
    if array.ndim != 3:
        return array
    return onp.concatenate([array[i, :int(n)] for i, n in enumerate(lens)])


def fidelity(reference, outputs, valid_lens):
    """``{'agreement', 'divergence', 'count'}`` of ``outputs`` against ``reference``: both a
    list (per batch) of lists of numpy arrays (the graph's outputs); ``valid_lens`` the
    batches' (batch,) lengths. Module docstring for the measures."""
    scores = [r[j] for r in reference for j in range(len(r)) if r[j].ndim == 1]
    scale = max(float(onp.concatenate(scores).std()), 1e-6) if scores else 1.0
    agree = diverge = count = 0.0
    for ref_batch, out_batch, lens in zip(reference, outputs, valid_lens):
        for ref, out in zip(ref_batch, out_batch):
            ref, out = _rows(ref, lens), _rows(out, lens)
            if ref.ndim == 1:
                diff = onp.abs(ref.astype(onp.float64) - out)
                agree += float((diff <= SCORE_TOLERANCE * scale).sum())
                diverge += float((diff ** 2).sum()) / scale ** 2
            else:
                log_p, log_q = _log_softmax(ref), _log_softmax(out)
                agree += float((ref.argmax(-1) == out.argmax(-1)).sum())
                diverge += float((onp.exp(log_p) * (log_p - log_q)).sum())
            count += len(ref)
    return dict(agreement=agree / max(count, 1), divergence=diverge / max(count, 1),
                count=int(count))
