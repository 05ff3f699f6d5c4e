"""BERT pretraining (D2L §15.10): masked LM + next-sentence prediction on WikiText or plain text, resumable.

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
from mxnet import gluon, init

from .common import storage
from .common.errors import ConfigError, DataError
from .common.files import check_encoding
from .common.outputs import check_out_folder, check_output_file
from .config import PretrainConfig
from .data.plaintext import read_text
from .data.wikitext import PretrainIter, WikiTextDataset, read_wiki
from .models import build, pretrained
from .training import distributed
from .training.checkpoint import Checkpoint
from .training.callbacks import Callback, Checkpointing, Watchdog, check_finite
from .training.devices import parse_devices, set_seed, split_arrays
from .training.loop import Loop, LoopState
from .training.step import StepOutput, TrainStep
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


def pretrain_forward(net, vocab_size, devices):
    """Pretraining's step forward: the MLM + NSP loss of each device's shard of a batch
    (``normalizer`` 1: the losses are means), the two losses kept for the metrics."""
    loss = gluon.loss.SoftmaxCELoss()

    def forward(batch):
        mlm_ls, nsp_ls, ls = batch_loss_bert(net, loss, vocab_size, split_arrays(batch, devices))
        return StepOutput(ls, 1, tokens=batch[0], extras=(mlm_ls, nsp_ls))
    return forward


class PretrainMetrics(Callback):
    """The MLM and NSP losses (the mean over devices, as the book's metric, summed on the
    first device) read at log points into ``hist`` (``step``, ``mlm``, ``nsp``), with a
    progress line on stderr and the divergence check; ``pairs_per_sec`` at the end."""

    def __init__(self, devices, hist, num_steps):
        self.devices, self.hist, self.num_steps = devices, hist, num_steps

    def on_train_begin(self, state):
        self.sums = [mx.np.zeros((), ctx=self.devices[0]) for _ in range(2)]
        self.since, self.pairs, self.start = 0, 0, time.time()

    def on_step_end(self, state, out):
        for k, part in enumerate(out.extras):
            self.sums[k] = self.sums[k] + sum(l.as_in_context(self.devices[0]) for l in part) / len(part)
        self.since, self.pairs = self.since + 1, self.pairs + out.tokens.shape[0]

    def on_log(self, state):
        means = [float(s) / self.since for s in self.sums]
        check_finite(means[0] + means[1], state.step, hint='Lower --lr')
        for key, value in zip(('step', 'mlm', 'nsp'), (state.step, *means)):
            self.hist[key].append(value)
        self.sums, self.since = [s * 0 for s in self.sums], 0
        seconds = time.time() - self.start
        sys.stderr.write(f'\rstep {state.step}/{self.num_steps}: MLM loss {means[0]:.3f}, NSP loss '
                         f'{means[1]:.3f}, {self.pairs / max(seconds, 1e-9):.1f} pairs/sec, {seconds:.0f}s')
        sys.stderr.write('\n' if state.step == self.num_steps else '')
        sys.stderr.flush()

    def on_train_end(self, state):
        mx.nd.waitall()
        state.totals['pairs_per_sec'] = self.pairs / max(time.time() - self.start, 1e-9)


def train_bert(net, train_iter, trainer, vocab_size, devices, state, callbacks=(), log_every=10):
    """The book's ``train_bert`` on the shared loop, from ``state['step']`` to
    ``state['num_steps']``; returns ``state``.

    ``state['history']`` gets the mean MLM and NSP losses of every ``log_every`` steps;
    ``callbacks`` (:mod:`~gluon_bertft.training.callbacks`) add the checkpoints and the
    watchdog. Adam steps by 1: the losses are means (the book's ``trainer.step(1)``).
    """
    num_steps, num_batches = state['num_steps'], len(train_iter)
    step = TrainStep(trainer, pretrain_forward(net, vocab_size, devices), devices)
    metrics = PretrainMetrics(devices, state['history'], num_steps)
    loop = Loop(step, train_iter, [metrics, *callbacks], log_every, epoch_logs=False)
    epoch, batch = divmod(state['step'], num_batches)
    run = loop.run(LoopState(-(-num_steps // num_batches), num_batches, {}, epoch, batch,
                             max_steps=num_steps))
    state.update(step=run.step if num_steps else state['step'],
                 pairs_per_sec=run.totals.get('pairs_per_sec', 0.0))
    return state


def pretrain_checkpoints(ckpt, bert, trainer, state, every, rank):
    """The checkpoint callback of pretraining: every ``every`` steps and at the last, rank 0
    saves ``state`` (with the time spent, summed over resumed runs); every worker then
    reseeds dropout from ``(seed, step, rank)``, so a resumed run equals an uninterrupted one."""
    seed, mark = state['run']['seed'], [time.time()]

    def save(loop_state):
        now = time.time()
        state.update(step=loop_state.step, seconds=state.get('seconds', 0.0) + now - mark[0])
        mark[0] = now
        ckpt.save(bert, trainer, **{k: v for k, v in state.items() if k != 'num_steps'})
    reseed = lambda step: mx.random.seed(seed + step + 1_000_003 * rank)
    return Checkpointing(every, save if rank == 0 and state['num_steps'] else None, reseed,
                         epoch_ends=False, last_step=True)


def output_paths(out):
    """Checkpoint folder, loss curve PNG and history JSON next to ``out`` (a .zip or folder)."""
    stem = out[:-len('.zip')] if out.endswith('.zip') else out.rstrip('/\\')
    return stem + '.ckpt', stem + '.loss.png', stem + '.history.json'


def check_outputs(config):
    """Refuse, before any work, every output that breaks the rule of
    :mod:`gluon_bertft.common.outputs`: ``--out`` (a ``.zip`` file or a folder holding only the
    book's files), the checkpoint folder, the loss curve and history beside ``--out``; none
    may be, be inside or hold ``--corpus``, nor the checkpoint folder ``--out`` (replacing one
    would delete the other). Returns ``output_paths(config.out)`` with the checkpoint folder
    chosen (``--checkpoint`` if given)."""
    c, inputs = config, [('--corpus', config.corpus)]
    if c.out.endswith('.zip'):
        check_output_file(c.out, '--out', inputs)
    else:
        check_out_folder(c.out, '--out', inputs, names=pretrained.BOOK_FILES)
    ckpt_path, png_path, history_path = output_paths(c.out)
    ckpt_path = ckpt_path if c.checkpoint is None else c.checkpoint
    check_out_folder(ckpt_path, '--out' if c.checkpoint is None else '--checkpoint', inputs,
                     others=[('--out', c.out)])
    for path in (png_path, history_path):  # written beside --out
        check_output_file(path, '--out', inputs)
    return ckpt_path, png_path, history_path


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


def load_corpus(corpus, max_len, seed, encoding='utf-8', format='wikitext'):
    """``WikiTextDataset`` of a WikiText file or folder (``format='wikitext'``) or of a
    plain-text file, one paragraph per line (``'text'``: :func:`~gluon_bertft.data.plaintext.read_text`);
    the shuffle and masks follow ``seed``. ``DataError`` naming ``corpus`` when it is too
    small (no token 5 times, no pair that fits ``max_len``)."""
    set_seed(seed)
    paragraphs = (read_text(corpus, encoding=encoding) if format == 'text'
                  else read_wiki(corpus, encoding=encoding))
    try:
        return WikiTextDataset(paragraphs, max_len)
    except DataError as e:  # too small: named by the file
        raise DataError(f'--corpus {corpus}: {e}') from None


def check_pretrain_config(c):
    """Refuse, before any work, a :class:`PretrainConfig` that cannot run (``ConfigError``
    naming the option): ranges, the preset, the outputs, the encoding, the lengths."""
    c.check_ranges()
    if c.preset not in PRESETS:
        raise ConfigError(f'--preset {c.preset!r}: unknown (choose from {", ".join(sorted(PRESETS))})')
    if c.corpus is None or c.out is None:
        raise ConfigError('pretrain: give --corpus and --out')
    if c.format == 'text' and os.path.isdir(c.corpus):
        raise ConfigError(f'--corpus {c.corpus}: a folder; --format text reads one plain-text file')
    check_outputs(c)
    check_encoding(c.encoding)
    if c.steps < 0:
        raise ConfigError(f'--steps {c.steps}: must be >= 0')
    if c.max_len > PRESETS[c.preset]['max_len']:
        raise ConfigError(f'--max-len {c.max_len}: longer than the {c.preset} position embedding '
                          f'({PRESETS[c.preset]["max_len"]})')
    if c.max_len < 5:
        raise ConfigError(f'--max-len {c.max_len}: a pair needs at least 5 (<cls>, two <sep> '
                          'and a token of each sentence)')


def pretrain(config, log=print, log_every=10):
    """Pretrain BERT as §15.10 does from a :class:`~gluon_bertft.config.PretrainConfig`;
    returns ``(bert, vocab, state)``.

    ``config.corpus``: a WikiText file or a folder with ``wiki.train.tokens``, or with
    ``format='text'`` a plain-text file (one paragraph per line); ``preset``: the
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
    check_pretrain_config(c)
    devices = parse_devices(c.devices)
    dataset = load_corpus(c.corpus, c.max_len, c.seed, c.encoding, c.format)
    vocab, arrays = dataset.vocab, dataset.arrays()
    kv, watchdog, rank, local_batch = c.kvstore or distributed.default_kvstore(), None, 0, c.batch_size
    if distributed.is_distributed(kv):
        kv, watchdog, arrays, local_batch = distributed.join(kv, arrays, c.batch_size)
        rank = kv.rank
        log(f'worker {rank} of {kv.num_workers} ({kv.type}): {len(arrays[0])} sentence pairs, '
            f'{local_batch} of each global batch of {c.batch_size}')
    if len(arrays[0]) < local_batch:
        raise ConfigError(f'--batch-size {c.batch_size}: the corpus has {len(arrays[0])} sentence '
                          f'pairs{" per worker" if watchdog else ""}, fewer than one batch')
    config = dict(PRESETS[c.preset], vocab_size=len(vocab))
    log(f'{len(dataset)} sentence pairs, vocabulary of {len(vocab)} tokens, {c.preset} '
        f'({config["num_blks"]} blocks, {config["num_hiddens"]} hidden), devices {devices}')
    bert = init_bert(config, devices, c.seed, c.dropout)
    if c.hybridize:
        bert.hybridize(static_alloc=True)
    # make_trainer keys parameters by structural name (collect_params() names carry
    # process-wide counters: a state saved by another process would mismatch); on dist_sync
    # its rescale_grad 1/W turns the servers' sum of W mean-loss gradients into their mean
    trainer = make_trainer(bert, c.lr, kvstore=kv)
    ckpt, state = resume_pretraining(c, bert, trainer, devices, vocab, config,
                                     kv.num_workers if watchdog else 1, log)
    if watchdog:
        distributed.agree(kv, batches=-(-len(arrays[0]) // local_batch), step=state['step'])
    callbacks = [pretrain_checkpoints(ckpt, bert, trainer, state,
                                      c.checkpoint_every or max(1, c.steps), rank)]
    callbacks += [Watchdog(watchdog)] if watchdog else []
    train_iter = PretrainIter(arrays, local_batch, shuffle=True, seed=c.seed, trim=True)
    state = train_bert(bert, train_iter, trainer, len(vocab), devices, state, callbacks, log_every)
    if watchdog:
        log(f'worker {rank} of {kv.num_workers}: parameters {distributed.fingerprint(bert)}')
        distributed.finish()
    if rank == 0:
        save_pretraining(c, bert, vocab, config, state, devices, log)
    return bert, vocab, state


def resume_pretraining(c, bert, trainer, devices, vocab, config, num_workers, log):
    """``(checkpoint, state)``: the run's checkpoint and its starting state, loaded from the
    checkpoint with ``c.resume`` when there is one (the run settings checked)."""
    digest = hashlib.sha1(json.dumps(vocab.idx_to_token).encode()).hexdigest()[:12]
    ckpt = Checkpoint(c.checkpoint or output_paths(c.out)[0], c.run_settings(
        config=config, vocab_sha1=digest, num_workers=num_workers))
    state = dict(step=0, corpus=os.path.abspath(c.corpus), lr=c.lr,
                 history=dict(step=[], mlm=[], nsp=[]))
    if c.resume and ckpt.exists():
        saved = ckpt.load(bert, trainer, devices, c.lr, counters=dict(step=None),
                          history=('step', 'mlm', 'nsp'), trusted=c.trust_checkpoint)
        seconds = saved.get('seconds', 0.0)  # the time of the runs before: a statistic only
        state.update(step=saved['step'], history=saved['history'],
                     seconds=seconds if isinstance(seconds, (int, float)) else 0.0)
        log(f'resumed from {ckpt.path} at step {state["step"]}')
    state.update(run=ckpt.run, num_steps=c.steps)
    return ckpt, state


def save_pretraining(c, bert, vocab, config, state, devices, log):
    """Write the model in the book's format, the history JSON and the loss curve."""
    _, png_path, history_path = output_paths(c.out)
    pretrained.save_pretrained(bert, vocab, c.out, config)
    storage.write_json(history_path, {k: v for k, v in state.items() if k != 'num_steps'})
    if state['history']['step']:
        plot_pretraining(state['history'], png_path)
        h = state['history']
        log(f'MLM loss {h["mlm"][-1]:.3f}, NSP loss {h["nsp"][-1]:.3f}')
        log(f'{state["pairs_per_sec"]:.1f} sentence pairs/sec on {devices}')
    log(f'saved {c.out} (step {state["step"]}); loss curve {png_path}, checkpoint '
        f'{c.checkpoint or output_paths(c.out)[0]}')


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
