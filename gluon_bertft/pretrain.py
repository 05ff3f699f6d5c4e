"""BERT pretraining (D2L §15.10): masked LM + next-sentence prediction on WikiText, resumable.

The book's ``train_bert`` with its loss (``_get_batch_loss_bert``), Adam and ``trainer.step(1)``,
on the hybridized :class:`~gluon_bertft.models.bert.BERTModel` that fine-tuning uses. Additions that
do not change what is learned: losses are summed on the devices and read once per log interval;
a checkpoint (parameters, Adam state, step, loss history) is written atomically every
``checkpoint_every`` steps and a run with ``resume`` continues from it; dropout is reseeded at
every checkpoint step, so a resumed run equals an uninterrupted one.
The result is written in the book's format (``vocab.json`` + ``pretrained.params``, plus
``config.json``) for :func:`~gluon_bertft.models.pretrained.load_pretrained_model`.
"""
import hashlib
import json
import os
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon, init

from .common import storage
from .common.errors import ConfigError
from .common.files import check_encoding
from .config import PretrainConfig, check_output
from .data.wikitext import PretrainIter, WikiTextDataset, read_wiki
from .models import build, pretrained
from .training import distributed
from .training.checkpoint import Checkpoint
from .training.devices import parse_devices, set_seed, split_arrays
from .training.loop import check_finite
from .training.trainer import make_trainer

PRESETS = build.ALL_PRESETS


def init_bert(config, devices, seed, dropout=0.2):
    """A :class:`BERTModel` of ``config`` with the book's Xavier initialization, seeded."""
    mx.random.seed(seed)
    bert = build.build_bert(config, dropout)
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
        shards = split_arrays(batch, devices)
        mlm_ls, nsp_ls, _ = batch_loss_bert(net, loss, vocab_size, shards)
        for k, part in enumerate((mlm_ls, nsp_ls)):
            sums[k] += sum(float(l) * s[0].shape[0] for l, s in zip(part, shards))
        count += batch[0].shape[0]
    return sums[0] / count, sums[1] / count


def _log_line(step, num_steps, mlm, nsp, pairs, seconds):
    sys.stderr.write(f'\rstep {step}/{num_steps}: MLM loss {mlm:.3f}, NSP loss {nsp:.3f}, '
                     f'{pairs / max(seconds, 1e-9):.1f} pairs/sec, {seconds:.0f}s')
    if step == num_steps:
        sys.stderr.write('\n')
    sys.stderr.flush()


def train_bert(net, train_iter, trainer, vocab_size, devices, num_steps, state,
               checkpoint_every=50, log_every=10, save=None, step_done=None, rank=0):
    """The book's ``train_bert`` from ``state['step']`` to ``num_steps``; returns ``state``.

    ``state['history']`` gets the mean MLM and NSP losses of every ``log_every`` steps; every
    ``checkpoint_every`` steps (and at the end) ``save(state)`` writes a checkpoint;
    ``state['seconds']`` sums the training time over resumed runs; ``step_done()`` is called
    after every step (a distributed worker's watchdog). Dropout is reseeded from
    ``(seed, step, rank)`` at every checkpoint, so a resumed run equals an uninterrupted one.
    """
    loss = gluon.loss.SoftmaxCELoss()
    hist = state['history']
    seed, step = state['run']['seed'], state['step']
    reseed = lambda: mx.random.seed(seed + step + 1_000_003 * rank)
    reseed()
    sums = [mx.np.zeros((), ctx=devices[0]) for _ in range(2)]
    since, pairs, start = 0, 0, time.time()
    mark = start
    while step < num_steps:
        epoch, first = divmod(step, len(train_iter))
        for batch in train_iter.iter_from(epoch, first):
            with autograd.record():
                mlm_ls, nsp_ls, ls = batch_loss_bert(net, loss, vocab_size,
                                                     split_arrays(batch, devices))
            autograd.backward(ls)
            trainer.step(1)
            # the mean over devices, as the book's metric, summed on the first device
            for k, part in enumerate((mlm_ls, nsp_ls)):
                sums[k] = sums[k] + sum(l.as_in_context(devices[0]) for l in part) / len(part)
            step, since, pairs = step + 1, since + 1, pairs + batch[0].shape[0]
            if step_done:
                step_done()
            if since == log_every or step == num_steps:
                # the only host synchronisation: once per log interval
                means = [float(s) / since for s in sums]
                check_finite(means[0] + means[1], step, hint='Lower --lr')
                hist['step'].append(step)
                hist['mlm'].append(means[0])
                hist['nsp'].append(means[1])
                sums, since = [s * 0 for s in sums], 0
                _log_line(step, num_steps, means[0], means[1], pairs, time.time() - start)
            if step % checkpoint_every == 0 and not save:
                reseed()  # the workers that do not write reseed at the same steps
            if save and (step % checkpoint_every == 0 or step == num_steps):
                now = time.time()
                state['step'], state['seconds'] = step, state.get('seconds', 0.0) + now - mark
                mark = now
                save(state)
                reseed()
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
    storage.save_figure(fig, path)


def load_corpus(corpus, max_len, seed, encoding='utf-8'):
    """``WikiTextDataset`` of a WikiText file or folder; the shuffle and masks follow ``seed``."""
    set_seed(seed)
    return WikiTextDataset(read_wiki(corpus, encoding=encoding), max_len)


def pretrain(config, log=print, log_every=10):
    """Pretrain BERT as §15.10 does from a :class:`~gluon_bertft.config.PretrainConfig`;
    returns ``(bert, vocab, state)``.

    ``config.corpus``: a WikiText file or a folder with ``wiki.train.tokens``; ``preset``: the
    architecture (:data:`PRESETS`: the hub's or the book's §15.10 ``bert.tiny``), with the
    corpus vocabulary. ``out``: a ``.zip`` or folder in the book's format. The checkpoint
    folder (default: ``out`` without ``.zip``, plus ``.ckpt``) is written every
    ``checkpoint_every`` steps; with ``resume`` a run continues from it when it exists.
    ``steps=0`` saves the initial, random weights. Beside ``out`` go ``<stem>.loss.png`` and
    ``<stem>.history.json``. Under ``launch`` (dist_sync) each worker trains on its shard of
    the sentence pairs with ``batch_size`` as the global batch; the servers sum the workers'
    gradients of their mean losses, which the optimizer scales by 1/W; rank 0 writes.
    ``log_every``: steps per point of the loss history (and per progress line).
    """
    c = config
    c.check_ranges()
    if c.preset not in PRESETS:
        raise ConfigError(f'--preset {c.preset!r}: unknown (choose from {", ".join(sorted(PRESETS))})')
    if not c.corpus or not c.out:
        raise ConfigError('pretrain: give --corpus and --out')
    check_output(c.out, folder=not c.out.endswith('.zip'))
    ckpt_path, png_path, history_path = output_paths(c.out)
    check_output(c.checkpoint or ckpt_path, True, '--checkpoint' if c.checkpoint else '--out')
    for path in (png_path, history_path):  # written beside --out
        check_output(path, False)
    check_encoding(c.encoding)
    if c.steps < 0:
        raise ConfigError(f'--steps {c.steps}: must be >= 0')
    if c.max_len > PRESETS[c.preset]['max_len']:
        raise ConfigError(f'--max-len {c.max_len}: longer than the {c.preset} position embedding '
                          f'({PRESETS[c.preset]["max_len"]})')
    if c.max_len < 5:
        raise ConfigError(f'--max-len {c.max_len}: a pair needs at least 5 (<cls>, two <sep> '
                          'and a token of each sentence)')
    devices = parse_devices(c.devices)
    dataset = load_corpus(c.corpus, c.max_len, c.seed, c.encoding)
    vocab = dataset.vocab
    kv, watchdog, rank, local_batch = c.kvstore or distributed.default_kvstore(), None, 0, c.batch_size
    arrays = dataset.arrays()
    if distributed.is_distributed(kv):
        kv, watchdog, arrays, local_batch = distributed.join(kv, arrays, c.batch_size)
        rank = kv.rank
        log(f'worker {rank} of {kv.num_workers} ({kv.type}): {len(arrays[0])} sentence pairs, '
            f'{local_batch} of each global batch of {c.batch_size}')
    if len(arrays[0]) < local_batch:
        raise ConfigError(f'--batch-size {c.batch_size}: the corpus has {len(arrays[0])} sentence '
                          f'pairs{" per worker" if watchdog else ""}, fewer than one batch')
    config = dict(PRESETS[c.preset], vocab_size=len(vocab))
    digest = hashlib.sha1(json.dumps(vocab.idx_to_token).encode()).hexdigest()[:12]
    ckpt = Checkpoint(c.checkpoint or ckpt_path, c.run_settings(
        config=config, vocab_sha1=digest, num_workers=kv.num_workers if watchdog else 1))
    state = dict(step=0, corpus=os.path.abspath(c.corpus), lr=c.lr,
                 history=dict(step=[], mlm=[], nsp=[]))
    log(f'{len(dataset)} sentence pairs, vocabulary of {len(vocab)} tokens, {c.preset} '
        f'({config["num_blks"]} blocks, {config["num_hiddens"]} hidden), devices {devices}')
    bert = init_bert(config, devices, c.seed, c.dropout)
    if c.hybridize:
        bert.hybridize(static_alloc=True)
    # make_trainer keys parameters by structural name (collect_params() names carry
    # process-wide counters: a state saved by another process would mismatch); on dist_sync
    # its rescale_grad 1/W turns the servers' sum of W mean-loss gradients into their mean
    trainer = make_trainer(bert, c.lr, kvstore=kv)
    if c.resume and ckpt.exists():
        saved = ckpt.load(bert, trainer, devices, c.lr, counters=dict(step=None),
                          history=('step', 'mlm', 'nsp'))
        seconds = saved.get('seconds', 0.0)  # the time of the runs before: a statistic only
        state.update(step=saved['step'], history=saved['history'],
                     seconds=seconds if isinstance(seconds, (int, float)) else 0.0)
        log(f'resumed from {ckpt.path} at step {state["step"]}')
    if watchdog:
        distributed.agree(kv, batches=-(-len(arrays[0]) // local_batch), step=state['step'])
    state['run'] = ckpt.run
    train_iter = PretrainIter(arrays, local_batch, shuffle=True, seed=c.seed, trim=True)
    save = (lambda s: ckpt.save(bert, trainer, **s)) if rank == 0 and c.steps else None
    state = train_bert(bert, train_iter, trainer, len(vocab), devices, c.steps, state,
                       checkpoint_every=c.checkpoint_every or max(1, c.steps), log_every=log_every,
                       save=save, step_done=watchdog.beat if watchdog else None, rank=rank)
    if watchdog:
        log(f'worker {rank} of {kv.num_workers}: parameters {distributed.fingerprint(bert)}')
        distributed.finish()
    if rank == 0:
        pretrained.save_pretrained(bert, vocab, c.out, config)
        storage.write_json(history_path, state)
        if state['history']['step']:
            plot_pretraining(state['history'], png_path)
            h = state['history']
            log(f'MLM loss {h["mlm"][-1]:.3f}, NSP loss {h["nsp"][-1]:.3f}')
            log(f'{state["pairs_per_sec"]:.1f} sentence pairs/sec on {devices}')
        log(f'saved {c.out} (step {state["step"]}); loss curve {png_path}, checkpoint {ckpt.path}')
    return bert, vocab, state


def pretrain_bert(corpus, out, preset='bert.small', num_steps=1000, batch_size=512, max_len=64,
                  lr=0.01, dropout=0.2, devices=None, seed=0, resume=False, checkpoint=None,
                  checkpoint_every=50, log_every=10, log=print, **options):
    """:func:`pretrain` with keyword arguments (``devices``: contexts or a spec string)."""
    if devices is not None and not isinstance(devices, str):
        devices = ','.join(f'{d.device_type}:{d.device_id}' for d in devices)
    return pretrain(PretrainConfig(corpus=corpus, out=out, preset=preset, steps=num_steps,
                                   batch_size=batch_size, max_len=max_len, lr=lr, dropout=dropout,
                                   devices=devices or 'auto', seed=seed, resume=resume,
                                   checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                   **options), log=log, log_every=log_every)
