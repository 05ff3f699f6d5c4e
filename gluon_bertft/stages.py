"""The stages after preparation that fine-tuning and distillation share (:mod:`.finetune`,
:mod:`.distill`): the loop with fine-tuning's callbacks and exact resume (:func:`fit`), the
test metrics and the baseline's (:func:`report`), and the run's outputs written together
(:func:`save_run`). Each takes the :class:`~gluon_bertft.finetune.Run` whole.
"""
import os

from .common import storage
from .common.errors import ConfigError
from .common.metrics import format_metrics
from .common.outputs import replace_folder
from .data.batching import make_iter
from .inference.fast import inference_net
from .tasks.base import COMMON_OPTIONS
from .training import distributed, precision
from .training.callbacks import Checkpointing, EarlyStopping, Watchdog
from .training.checkpoint import Checkpoint
from .training.evaluate import predict_outputs
from .training.loop import HISTORY, train

def outputs(run, dataset):
    """The network's host outputs for every example of ``dataset``, in order (length-sorted
    batches), computed by a fast inference copy of its current weights
    (:func:`~gluon_bertft.inference.fast.inference_net`; the trained network is left alone);
    with a notebook's animator no bar, which would replace its last drawing."""
    batches = make_iter(dataset, run.config.batch_size, False,
                        book_batches=run.config.book_batches, sort=True)
    return predict_outputs(inference_net(run.net), batches, run.devices,
                           progress=False if run.animator else None)


def fit(run):
    """Resume from the checkpoint if asked, then run the loop with fine-tuning's callbacks;
    returns the history."""
    config, task = run.config, run.task
    num_workers = run.kv.num_workers if run.watchdog else 1
    ckpt = Checkpoint(os.path.join(config.out, 'checkpoint') if config.out else None,
                      config.run_settings(num_workers=num_workers,
                                          schedule_steps=run.total_steps if config.warmup else None,
                                          **recorded_weights(run)))
    start, history, kept = resume(run, ckpt)
    if run.watchdog:
        distributed.agree(run.kv, batches=len(run.train_iter), epoch=start[0], batch=start[1])

    def validate(_):
        value = task.score(outputs(run, run.valid_set), run.valid_rows,
                           run.valid_set)[task.metric]
        return task.metric, float('nan') if value is None else value  # undefined: never best
    half = config.dtype == 'float16'
    callbacks = [EarlyStopping(config.patience, config.min_delta)] if config.patience else []
    callbacks += [checkpoints(run, ckpt, start, kept)]
    callbacks += [Watchdog(run.watchdog)] if run.watchdog else []
    history = train(run.net, run.train_iter, run.test_iter,
                    precision.float32_loss(task.loss) if half else task.loss, run.trainer,
                    config.epochs, run.devices, accuracy=task.accuracy, log=run.log,
                    validate=validate if run.valid_set is not None else None, animator=run.animator,
                    keep_best=run.watchdog is None, kept=kept, start=start, history=history,
                    loss_scale=precision.LOSS_SCALE if half else 1.0, clip_grad=config.clip_grad,
                    forward=run.forward, callbacks=callbacks)
    if half:
        run.net.cast('float32')
    if run.watchdog:
        run.log(f'worker {run.rank} of {run.kv.num_workers}: parameters '
                f'{distributed.fingerprint(run.net)}, '
                f'{run.kv.num_workers * history["examples_per_sec"][-1]:.1f} examples/sec in all')
        distributed.finish()
    return history


def resume(run, ckpt):
    """``(start, history, kept)`` of a run resumed from ``ckpt`` (with ``config.resume`` and a
    checkpoint there), else of a new run."""
    config = run.config
    if not (config.resume and ckpt.exists()):
        return (0, 0), None, {}
    state = ckpt.load(run.net, run.trainer, run.devices, config.lr,
                      counters=dict(epoch=None, batch=len(run.train_iter) - 1), history=HISTORY,
                      trusted=config.trust_checkpoint)
    if state['epoch'] >= config.epochs:
        raise ConfigError(f'{ckpt.path}: all {state["epoch"]} epochs are done; ask for more '
                          '--epochs to train on')
    history, kept = state['history'], {}
    best_params = ckpt.load_best(run.devices[0])
    if best_params is not None and history.get('best_epoch'):  # the epochs before count too
        kept = dict(value=history['valid'][history['best_epoch'] - 1], params=best_params)
    run.log(f'resumed from {ckpt.path}: {state["epoch"]} epochs and {state["batch"]} batches done')
    return (state['epoch'], state['batch']), history, kept


def checkpoints(run, ckpt, start, kept):
    """Fine-tuning's checkpoint callback: every ``checkpoint_every`` steps and after every
    epoch rank 0 saves ``ckpt`` (with ``kept``'s best-epoch parameters); all workers then
    reseed dropout from ``(seed, rank, step)``, so a resumed run equals an uninterrupted one."""
    config = run.config

    def save(state):
        ckpt.save(run.net, run.trainer, best_params=kept.get('params'), epoch=state.epoch,
                  batch=state.batch, history=state.history)
    reseed = lambda step: distributed.reseed(config.seed, run.rank, step)
    return Checkpointing(config.checkpoint_every, save if run.rank == 0 else None,
                         reseed if config.checkpoint_every or run.watchdog else None)


def report(run, history):
    """The result: the history, and on rank 0 the task's metrics on the test set and the
    trivial predictor's, logged."""
    result = dict(history, unknown_share=run.unknown)
    if run.weights:
        result['class_weights'] = dict(zip(run.task.display_labels, run.weights))
    if run.rank == 0:
        task = run.task
        result.update(test=task.score(outputs(run, run.test_set), run.test_rows, run.test_set),
                      baseline=task.baseline(run.train_rows, run.test_rows, run.test_set))
        run.log(f'test: {format_metrics(result["test"])}')
        doc = task.baseline.__doc__.strip().rstrip('.').replace('``', '')
        run.log(f'baseline ({doc[0].lower() + doc[1:]}): {format_metrics(result["baseline"])}')
    return result


def save_run(run, result):
    """``out/model``, ``out/result.json`` and ``out/training_curve.png``, together: ``out`` is
    replaced in one step with ``out/checkpoint`` carried over
    (:func:`~gluon_bertft.common.outputs.replace_folder`)."""
    config = run.config
    # each setting once: what the task's config or the top level holds is not repeated in the
    # run's settings (``finetune``); the class weights used are in result.json
    shown = {'task', 'pretrained', 'seed', 'train', 'test', *COMMON_OPTIONS,
             *type(run.task).OPTIONS}
    meta = dict(run.task.config, bert=run.bert_cfg, pretrained=config.pretrained,
                train_file=run.files[0], test_file=run.files[1], seed=config.seed,
                finetune={k: v for k, v in config.to_dict().items() if k not in shown})
    with replace_folder(config.out, keep=run.keep) as folder:
        storage.save_model(run.net, run.vocab, os.path.join(folder, 'model'), meta)
        storage.write_json(os.path.join(folder, 'result.json'), result)
        storage.plot_history(result, os.path.join(folder, 'training_curve.png'))
    run.log(f'saved the model, result.json and training_curve.png in {config.out}')


def recorded_weights(run):
    """The checkpoint's record of the class weights (stored label -> weight, so that a resumed
    run must use the same ones even if the weight file changed); nothing without them."""
    return dict(class_weights=dict(zip(run.task.config['labels'], run.weights))) if run.weights else {}
