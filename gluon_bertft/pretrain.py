"""BERT pretraining (D2L §15.10): masked LM + next-sentence prediction on WikiText, resumable.

The book's ``train_bert`` with its loss (``_get_batch_loss_bert``), Adam and ``trainer.step(1)``,
on the hybridized :class:`~gluon_bertft.model.BERTModel` that fine-tuning uses. Additions that
do not change what is learned: losses are summed on the devices and read once per log interval;
a checkpoint (parameters, Adam state, step, loss history) is written atomically every
``checkpoint_every`` steps and a run with ``resume`` continues from it; dropout is reseeded at
every checkpoint step, so a resumed run equals an uninterrupted one.
The result is written in the book's format (``vocab.json`` + ``pretrained.params``, plus
``config.json``) for :func:`~gluon_bertft.pretrained.load_pretrained_model`.
"""
import json
import os
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon, init

from . import pretrained
from .data.wikitext import PretrainIter, WikiTextDataset, read_wiki
from .finetune import save_figure, set_seed, write_json
from .train import default_devices

RUN_KEYS = ('preset', 'max_len', 'batch_size', 'seed')
# the hub presets plus the model the book pretrains in §15.10 (d2l.BERTModel's max_len 1000)
PRESETS = dict(pretrained.PRESETS, **{'bert.tiny': dict(
    num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_blks=2, max_len=1000)})


def init_bert(config, devices, seed, dropout=0.2):
    """A :class:`BERTModel` of ``config`` with the book's Xavier initialization, seeded."""
    mx.random.seed(seed)
    bert = pretrained.build_bert(config, dropout)
    bert.initialize(init.Xavier(), ctx=devices)
    return bert


def batch_loss_bert(net, loss, vocab_size, shards):
    """The book's ``_get_batch_loss_bert`` without its ``waitall``: per-device (mlm, nsp, sum).

    ``shards``: per device, ``(tokens, segments, valid_lens, pred_positions, mlm_weights,
    mlm_labels, nsp_labels)``. The MLM loss is the weighted mean over real predictions, the NSP
    loss the mean over pairs.
    """
    mlm_ls, nsp_ls, ls = [], [], []
    for tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_y, nsp_y in shards:
        _, mlm_y_hat, nsp_y_hat = net(tokens, segments, valid_lens, pred_positions)
        # (batch, num_preds, vocab) -> (batch * num_preds, vocab)
        mlm_l = loss(mlm_y_hat.reshape((-1, vocab_size)), mlm_y.reshape(-1),
                     mlm_weights.reshape((-1, 1)))
        mlm_l = mlm_l.sum() / (mlm_weights.sum() + 1e-8)
        nsp_l = loss(nsp_y_hat, nsp_y).mean()
        mlm_ls.append(mlm_l)
        nsp_ls.append(nsp_l)
        ls.append(mlm_l + nsp_l)
    return mlm_ls, nsp_ls, ls


def evaluate_loss_bert(net, data_iter, vocab_size, devices):
    """``(MLM loss, NSP loss)`` of ``net`` over ``data_iter``, batch-size weighted, no dropout."""
    loss = gluon.loss.SoftmaxCELoss()
    sums, count = [0.0, 0.0], 0
    for batch in data_iter:
        shards = split_batch(batch, devices)
        mlm_ls, nsp_ls, _ = batch_loss_bert(net, loss, vocab_size, shards)
        for k, part in enumerate((mlm_ls, nsp_ls)):
            sums[k] += sum(float(l) * s[0].shape[0] for l, s in zip(part, shards))
        count += batch[0].shape[0]
    return sums[0] / count, sums[1] / count


def split_batch(batch, devices):
    """Per-device shards of a seven-array batch (``split_and_load``, uneven allowed)."""
    parts = [gluon.utils.split_and_load(a, devices, even_split=False) for a in batch]
    return list(zip(*parts))


class Checkpoint:
    """A resumable pretraining state in a directory, written atomically.

    Holds ``model.params``, ``trainer.states``, ``vocab.json`` and ``state.json`` (step, run
    settings, model config, loss history).
    """

    def __init__(self, path):
        self.path = path

    def exists(self):
        return os.path.isfile(os.path.join(self.path, 'state.json'))

    def save(self, net, trainer, vocab, state):
        with pretrained.atomic_path(self.path) as tmp:
            os.makedirs(tmp)
            net.save_parameters(os.path.join(tmp, 'model.params'))
            trainer.save_states(os.path.join(tmp, 'trainer.states'))
            with open(os.path.join(tmp, 'vocab.json'), 'w', encoding='utf-8') as f:
                json.dump(vocab.idx_to_token, f)
            with open(os.path.join(tmp, 'state.json'), 'w', encoding='utf-8') as f:
                json.dump(state, f, indent=1)

    def read_state(self):
        with open(os.path.join(self.path, 'state.json'), encoding='utf-8') as f:
            return json.load(f)

    def check(self, state, vocab):
        """Raise ``PretrainedError`` unless the checkpoint was written by the same run settings."""
        saved = self.read_state()
        diff = [f'{k}={saved["run"].get(k)!r} (now {state["run"][k]!r})'
                for k in RUN_KEYS if saved['run'].get(k) != state['run'][k]]
        if saved['config'] != state['config'] and not diff:
            diff.append(f'model config {saved["config"]} (now {state["config"]})')
        with open(os.path.join(self.path, 'vocab.json'), encoding='utf-8') as f:
            if json.load(f) != vocab.idx_to_token:
                diff.append('a different vocabulary (another corpus)')
        if diff:
            raise pretrained.PretrainedError(
                f'{self.path}: cannot resume, the checkpoint was written with {"; ".join(diff)}. '
                'Use the same settings, or another --out / --checkpoint to start over')
        return saved

    def load(self, net, trainer, devices):
        net.load_parameters(os.path.join(self.path, 'model.params'), ctx=devices)
        trainer.load_states(os.path.join(self.path, 'trainer.states'))


def _log_line(step, num_steps, mlm, nsp, pairs, seconds):
    sys.stderr.write(f'\rstep {step}/{num_steps}: MLM loss {mlm:.3f}, NSP loss {nsp:.3f}, '
                     f'{pairs / max(seconds, 1e-9):.1f} pairs/sec, {seconds:.0f}s')
    if step == num_steps:
        sys.stderr.write('\n')
    sys.stderr.flush()


def train_bert(net, train_iter, trainer, vocab_size, devices, num_steps, state,
               checkpoint_every=50, log_every=10, save=None):
    """The book's ``train_bert`` from ``state['step']`` to ``num_steps``; returns ``state``.

    ``state['history']`` gets the mean MLM and NSP losses of every ``log_every`` steps; every
    ``checkpoint_every`` steps (and at the end) ``save(state)`` writes a checkpoint;
    ``state['seconds']`` sums the training time over resumed runs.
    """
    loss = gluon.loss.SoftmaxCELoss()
    hist = state['history']
    seed, step = state['run']['seed'], state['step']
    mx.random.seed(seed + step)
    sums = [mx.np.zeros((), ctx=devices[0]) for _ in range(2)]
    since, pairs, start = 0, 0, time.time()
    mark = start
    while step < num_steps:
        epoch, first = divmod(step, len(train_iter))
        for batch in train_iter.iter_from(epoch, first):
            with autograd.record():
                mlm_ls, nsp_ls, ls = batch_loss_bert(net, loss, vocab_size,
                                                     split_batch(batch, devices))
            autograd.backward(ls)
            trainer.step(1)
            # the mean over devices, as the book's metric, summed on the first device
            for k, part in enumerate((mlm_ls, nsp_ls)):
                sums[k] = sums[k] + sum(l.as_in_context(devices[0]) for l in part) / len(part)
            step, since, pairs = step + 1, since + 1, pairs + batch[0].shape[0]
            if since == log_every or step == num_steps:
                # the only host synchronisation: once per log interval
                means = [float(s) / since for s in sums]
                hist['step'].append(step)
                hist['mlm'].append(means[0])
                hist['nsp'].append(means[1])
                sums, since = [s * 0 for s in sums], 0
                _log_line(step, num_steps, means[0], means[1], pairs, time.time() - start)
            if save and (step % checkpoint_every == 0 or step == num_steps):
                now = time.time()
                state['step'], state['seconds'] = step, state.get('seconds', 0.0) + now - mark
                mark = now
                save(state)
                mx.random.seed(seed + step)
            if step == num_steps:
                break
    mx.nd.waitall()
    state['step'] = step
    state['pairs_per_sec'] = pairs / max(time.time() - start, 1e-9)
    return state


def output_paths(out):
    """Checkpoint folder, loss curve PNG and history JSON next to ``out`` (a .zip or folder)."""
    stem = out[:-len('.zip')] if out.endswith('.zip') else out.rstrip('/\\')
    return stem + '.ckpt', stem + '.loss.png', stem + '.history.json'


def plot_pretraining(history, path):
    """MLM and NSP loss per step, as the book's animator draws them, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(history['step'], history['mlm'], '-', label='mlm')
    ax.plot(history['step'], history['nsp'], 'm--', label='nsp')
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    save_figure(fig, path)


def load_corpus(corpus, max_len, seed):
    """``WikiTextDataset`` of a WikiText file or folder; the shuffle and masks follow ``seed``."""
    set_seed(seed)
    return WikiTextDataset(read_wiki(corpus), max_len)


def pretrain_bert(corpus, out, preset='bert.small', num_steps=1000, batch_size=512, max_len=64,
                  lr=0.01, dropout=0.2, devices=None, seed=0, resume=False, checkpoint=None,
                  checkpoint_every=50, log_every=10, trim=True, hybridize=True, log=print):
    """Pretrain BERT on ``corpus`` as §15.10 does and save it to ``out``; returns ``(bert, vocab, state)``.

    ``corpus``: a WikiText file or a folder with ``wiki.train.tokens``. ``preset``: the
    architecture (:data:`PRESETS`: the hub's or the book's §15.10 ``bert.tiny``), with the
    corpus vocabulary.
    ``out``: a ``.zip`` or folder in the book's format. The checkpoint folder (default: ``out``
    without ``.zip``, plus ``.ckpt``) is written every ``checkpoint_every`` steps; with
    ``resume`` a run continues from it when it exists. ``num_steps=0`` saves the initial,
    random weights. Beside ``out`` go ``<stem>.loss.png`` and ``<stem>.history.json``.
    """
    if preset not in PRESETS:
        raise pretrained.PretrainedError(f'preset {preset!r}: unknown (choose from '
                                         f'{", ".join(sorted(PRESETS))})')
    if num_steps < 0 or batch_size <= 0:
        raise ValueError(f'num_steps={num_steps}, batch_size={batch_size}: must be >= 0 and > 0')
    if max_len > PRESETS[preset]['max_len']:
        raise ValueError(f'max_len={max_len}: longer than the {preset} position embedding '
                         f'({PRESETS[preset]["max_len"]})')
    devices = devices or default_devices()
    ckpt_path, png_path, history_path = output_paths(out)
    ckpt = Checkpoint(checkpoint or ckpt_path)
    dataset = load_corpus(corpus, max_len, seed)
    vocab = dataset.vocab
    if len(dataset) < batch_size:
        raise ValueError(f'corpus too small: {len(dataset)} sentence pairs for batch_size={batch_size}')
    config = dict(PRESETS[preset], vocab_size=len(vocab))
    state = dict(step=0, run=dict(preset=preset, max_len=max_len, batch_size=batch_size, seed=seed),
                 config=config, corpus=os.path.abspath(corpus), lr=lr,
                 history=dict(step=[], mlm=[], nsp=[]))
    log(f'{len(dataset)} sentence pairs, vocabulary of {len(vocab)} tokens, {preset} '
        f'({config["num_blks"]} blocks, {config["num_hiddens"]} hidden), devices {devices}')
    bert = init_bert(config, devices, seed, dropout)
    if hybridize:
        bert.hybridize(static_alloc=True)
    # structural names: the Trainer orders parameters by name, and collect_params() names
    # carry process-wide counters, so a Trainer state saved by another process would mismatch
    trainer = gluon.Trainer(bert._collect_params_with_prefix(), 'adam', {'learning_rate': lr})
    if resume and ckpt.exists():
        state.update(ckpt.check(state, vocab), lr=lr)
        ckpt.load(bert, trainer, devices)
        trainer.set_learning_rate(lr)  # the saved optimizer comes back with its own
        log(f'resumed from {ckpt.path} at step {state["step"]}')
    train_iter = PretrainIter(dataset, batch_size, shuffle=True, seed=seed, trim=trim)
    save = lambda s: ckpt.save(bert, trainer, vocab, s)
    state = train_bert(bert, train_iter, trainer, len(vocab), devices, num_steps, state,
                       checkpoint_every=checkpoint_every, log_every=log_every,
                       save=save if num_steps else None)
    pretrained.save_pretrained(bert, vocab, out, config)
    write_json(history_path, state)
    if state['history']['step']:
        plot_pretraining(state['history'], png_path)
        h = state['history']
        log(f'MLM loss {h["mlm"][-1]:.3f}, NSP loss {h["nsp"][-1]:.3f}')
        log(f'{state["pairs_per_sec"]:.1f} sentence pairs/sec on {devices}')
    log(f'saved {out} (step {state["step"]}); loss curve {png_path}, checkpoint {ckpt.path}')
    return bert, vocab, state
