"""BERT's fine-tuning recipe: AdamW, global-norm clipping, linear warmup and decay.

Both implementations (``FusedAdam``, the default; ``fused=False``, per-parameter kernels and
passes) against a float64 numpy reference written from the definitions: MXNet's Adam
(``lr * sqrt(1 - beta2**t) / (1 - beta1**t)``, epsilon added to ``sqrt(v)``) with AdamW's
decoupled decay ``w -= lr * wd * w`` at the step's scheduled rate (Loshchilov & Hutter, 2019),
no decay on biases, and the mean gradient scaled by ``min(1, max_norm / norm)``.
"""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np
from test_train import LOSS, classifier, quiet

from gluon_bertft.common.errors import ConfigError
from gluon_bertft.config import FinetuneConfig
from gluon_bertft.data.batching import BatchIter
from gluon_bertft.data.snli import SNLIBERTDataset
from gluon_bertft.training.loop import train
from gluon_bertft.training.optimizer import FusedAdam, LazyEmbeddingAdam
from gluon_bertft.training.trainer import clip_global_norm, make_trainer

B1, B2, EPS = 0.9, 0.999, 1e-8


def linear_net():
    mx.random.seed(0)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    net.bias.set_data(np.array([0.5, -0.25, 1.0]))
    return net


def data(steps=6, batch=5):
    rng = onp.random.RandomState(0)
    return [(rng.randn(batch, 4).astype('float32'), rng.randn(batch, 3).astype('float32'))
            for _ in range(steps)]


def schedule():
    return (2, 6)  # warmup steps, total steps


def run(fused, lr=0.05, wd=0.1, max_norm=0.5):
    """The loop's steps (``train``: allreduce, clip, update) on 0.5 * squared error."""
    net = linear_net()
    trainer = make_trainer(net, lr, weight_decay=wd, schedule=schedule(), clip_grad=max_norm,
                           fused=fused)
    factors = []
    for x, y in data():
        with autograd.record():
            loss = 0.5 * ((net(np.array(x)) - np.array(y)) ** 2).sum(axis=1)
        loss.backward()
        trainer.allreduce_grads()
        clip_global_norm(trainer, [mx.cpu()], max_norm * len(x))
        factors.append(float((trainer.optimizer._grad_scale[mx.cpu()] if fused else
                              mx.nd.ones((1,))).asnumpy()[0]))
        trainer.update(len(x), ignore_stale_grad=True)
    return net.weight.data().asnumpy(), net.bias.data().asnumpy(), factors, trainer


def reference(lr=0.05, wd=0.1, max_norm=0.5):
    net = linear_net()
    w, b = (p.data().asnumpy().astype('float64') for p in (net.weight, net.bias))
    moments = {k: [onp.zeros_like(v), onp.zeros_like(v)] for k, v in (('w', w), ('b', b))}
    warmup, total = schedule()
    sched = mx.lr_scheduler.PolyScheduler(max_update=total, base_lr=lr, pwr=1, final_lr=0.0,
                                          warmup_steps=warmup, warmup_begin_lr=0.0,
                                          warmup_mode='linear')
    factors = []
    for t, (x, y) in enumerate(data(), 1):
        x, y = x.astype('float64'), y.astype('float64')
        err = x @ w.T + b - y                      # (batch, 3)
        grads = {'w': err.T @ x / len(x), 'b': err.sum(0) / len(x)}  # mean over the batch
        norm = onp.sqrt(sum((g ** 2).sum() for g in grads.values()))
        factors.append(min(1.0, max_norm / (norm + 1e-6 / len(x))))
        step_lr = sched(t)
        for name, value, decay in (('w', w, wd), ('b', b, 0.0)):  # no decay on biases
            g = grads[name] * factors[-1]
            m, v = moments[name]
            m[:] = B1 * m + (1 - B1) * g
            v[:] = B2 * v + (1 - B2) * g * g
            value -= step_lr * decay * value  # AdamW: decoupled, at this step's rate
            value -= step_lr * onp.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (onp.sqrt(v) + EPS)
    return w, b, factors


@pytest.mark.parametrize('fused', [True, False])
def test_recipe_equals_the_float64_reference(fused):
    w, b, factors, trainer = run(fused)
    ref_w, ref_b, ref_factors = reference()
    assert isinstance(trainer.optimizer, FusedAdam) == fused
    assert min(ref_factors) < 0.5  # clipping is active ...
    assert max(ref_factors) <= 1.0
    if fused:
        onp.testing.assert_allclose(factors, ref_factors, rtol=1e-5)
    # float32 against float64 over 6 steps; a decay at the previous step's rate is off by 1e-3
    onp.testing.assert_allclose(w, ref_w, rtol=0, atol=1e-5)
    onp.testing.assert_allclose(b, ref_b, rtol=0, atol=1e-5)
    moved = onp.abs(ref_w - linear_net().weight.data().asnumpy()).max()
    assert moved > 0.05  # ... and the weights moved far more than the tolerance


def test_decay_skips_biases_and_only_the_recipe_is_fused():
    net = linear_net()
    trainer = make_trainer(net, 0.1, weight_decay=0.01)
    assert isinstance(trainer.optimizer, FusedAdam)
    assert net.bias.wd_mult == 0.0 and net.weight.wd_mult == 1.0
    book = make_trainer(linear_net(), 0.1)  # the book's Adam: MXNet's adam_update, unfused
    assert type(book.optimizer) is LazyEmbeddingAdam
    assert type(make_trainer(linear_net(), 0.1, clip_grad=1.0, fused=False).optimizer) is LazyEmbeddingAdam
    with pytest.raises(ValueError, match='decoupled'):
        FusedAdam(learning_rate=0.1, wd=0.01)


def test_fused_and_per_parameter_recipes_train_alike(sample, vocab):
    """One epoch of the loop (``train``) on 128 SNLI pairs with the recipe: same parameters."""
    ds = SNLIBERTDataset(tuple(c[:128] for c in sample), 64, vocab)
    params = []
    for fused in (True, False):
        net = classifier(vocab)
        net.hybridize()
        trainer = make_trainer(net, 1e-3, weight_decay=0.01, clip_grad=0.5, schedule=(1, 4),
                               fused=fused)
        train(net, BatchIter.from_dataset(ds, 32), None, LOSS, trainer, 1, [mx.cpu()],
              log=quiet, progress=False, clip_grad=0.5)
        params.append([p.data().asnumpy() for p in net.collect_params().values()])
    for a, b in zip(*params):
        onp.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_lazy_rows_take_the_clipping_factor():
    """``mark_lazy`` rows under FusedAdam: the factor applied as if the gradients were scaled."""
    weights = []
    for fused in (True, False):
        mx.random.seed(0)
        net = gluon.nn.Embedding(8, 3)
        net.initialize(mx.init.Normal(1.0))
        opt = (FusedAdam if fused else LazyEmbeddingAdam)(learning_rate=0.1, wd=0.1,
                                                          decoupled_wd=True)
        trainer = gluon.Trainer(net.collect_params(), opt, update_on_kvstore=False)
        opt.mark_lazy([net.weight])
        for ids in ([1, 2, 2], [2, 3]):
            tokens = np.array(ids, dtype='int32')
            with autograd.record():
                loss = (net(tokens) ** 2).sum()
            loss.backward()
            opt.use_rows(tokens)
            trainer.allreduce_grads()
            clip_global_norm(trainer, [mx.cpu()], 0.1)
            trainer.update(len(ids))
        weights.append(net.weight.data().asnumpy())
    onp.testing.assert_allclose(weights[0], weights[1], rtol=0, atol=1e-6)


def test_float16_master_weights_take_the_fused_update():
    """``multi_mp_adamw_update``: float32 master copy updated, float16 weights cast from it."""
    grad = mx.nd.array([0.5, -1.0, 2.0, 0.0], dtype='float16')
    results = []
    for cls in (FusedAdam, LazyEmbeddingAdam):
        opt = cls(learning_rate=0.1, multi_precision=True, wd=0.01, decoupled_wd=True)
        weight = mx.nd.array([1.0, -2.0, 0.25, 3.0], dtype='float16')
        state = opt.create_state_multi_precision(0, weight)
        for _ in range(3):
            opt.update_multi_precision([0] if cls is FusedAdam else 0, [weight] if cls is FusedAdam
                                       else weight, [grad] if cls is FusedAdam else grad,
                                       [state] if cls is FusedAdam else state)
        assert weight.dtype == onp.float16 and state[0].dtype == onp.float32
        results.append((weight.asnumpy(), state[0].asnumpy()))
    onp.testing.assert_allclose(results[0][1], results[1][1], rtol=0, atol=5e-6)
    onp.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-3)
    assert results[0][1][3] < 3.0  # decay moves a weight whose gradient is 0


def test_no_fused_adam_needs_the_recipe():
    FinetuneConfig(task='classify', train='x.tsv', weight_decay=0.01, fused_adam=False).check()
    with pytest.raises(ConfigError, match='--no-fused-adam: applies with --weight-decay'):
        FinetuneConfig(task='classify', train='x.tsv', fused_adam=False).check()


@pytest.mark.parametrize('clip', [0.5, None])
def test_the_recipe_on_two_devices_equals_one(sample, vocab, clip):
    """cpu:0,cpu:1 (each half a batch; the clipping factor per device from the reduced
    gradients; without clipping the kvstore may run the update) against cpu:0 alone."""
    ds = SNLIBERTDataset(tuple(c[:64] for c in sample), 64, vocab)
    params = []
    for devices in ([mx.cpu(0), mx.cpu(1)], [mx.cpu(0)]):
        net = classifier(vocab, devices)
        net.hybridize()
        trainer = make_trainer(net, 1e-3, weight_decay=0.01, clip_grad=clip, schedule=(1, 2))
        assert isinstance(trainer.optimizer, FusedAdam)
        train(net, BatchIter.from_dataset(ds, 32), None, LOSS, trainer, 1, devices,
              log=quiet, progress=False, clip_grad=clip)
        params.append([p.data(mx.cpu(0)).asnumpy() for p in net.collect_params().values()])
        if len(devices) == 2:  # both copies updated alike
            for p in net.collect_params().values():
                onp.testing.assert_allclose(p.data(mx.cpu(1)).asnumpy(), p.data(mx.cpu(0)).asnumpy(),
                                            rtol=0, atol=1e-6)
    for a, b in zip(*params):
        onp.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
