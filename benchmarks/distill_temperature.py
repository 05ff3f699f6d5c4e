"""The range of distillation's ``--temperature`` that float32 computes (``common/values.py``'s
``TEMPERATURE_RANGE``): ``training/distill.kl_div`` and its gradient in float32 (MXNet) against
float64 numpy, on 256 random 3-class rows (scores N(0, 4^2)), for T from 1e-30 to 1e30.

    python benchmarks/distill_temperature.py
"""
import numpy as onp
from mxnet import np, npx, autograd
npx.set_np()
from gluon_bertft.training.distill import kl_div
rng = onp.random.RandomState(0)
S = rng.randn(256, 3) * 4; Tt = rng.randn(256, 3) * 4
def ref(s, t, T):
    def lsm(x):
        x = x / T; m = x.max(-1, keepdims=True); return x - m - onp.log(onp.exp(x - m).sum(-1, keepdims=True))
    ls, lt = lsm(s), lsm(t)
    loss = (onp.exp(lt) * (lt - ls)).sum(-1) * T * T
    grad = T * (onp.exp(ls) - onp.exp(lt))
    return loss, grad
for T in [1e-30, 1e-19, 1e-10, 1e-4, 1e-2, 0.1, 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e8, 1e19, 1e30]:
    s = np.array(S, dtype='float32'); s.attach_grad()
    with autograd.record():
        l = kl_div(s, np.array(Tt, dtype='float32'), T)
    l.backward()
    rl, rg = ref(S.astype('float32').astype('f8'), Tt.astype('float32').astype('f8'), T)
    l = l.asnumpy(); g = s.grad.asnumpy()
    el = onp.abs(l - rl).sum() / max(onp.abs(rl).sum(), 1e-300)
    eg = onp.abs(g - rg).sum() / max(onp.abs(rg).sum(), 1e-300)
    print(f'T={T:g} loss mean {l.mean():.3g} ref {rl.mean():.3g} relerr loss {el:.2e} grad {eg:.2e} finite {onp.isfinite(l).all()}')
