"""Does §15.10 pretraining help §16.7 fine-tuning at CPU scale? Pretrained vs random BERT on SNLI.

Phase ``pretrain``: the book's §15.10 BERT (``bert.tiny``: 2 blocks, 128 hidden, 2 heads)
pretrained with MLM + NSP on ``wiki.train.tokens.partial``, and its step-0 (random, Xavier)
weights saved with the same vocabulary. Phase ``finetune``: ``finetune_snli`` from both
checkpoints with identical settings on 1k / 3k / 8k SNLI pairs, validated on a fixed held-out
split of the SNLI dev file. Both runs use the WikiText vocabulary (min_freq 5), so they differ
only in the initial encoder weights. Phase ``heldout``: both checkpoints' MLM and NSP loss on
``wiki.valid.tokens``. Phase ``report``: table and curves (docs/pretraining.md).

    python experiments/pretrain_vs_random.py pretrain   # 27 min on 2 cores
    python experiments/pretrain_vs_random.py finetune   # 19 min
    python experiments/pretrain_vs_random.py heldout    # about 1 min
    python experiments/pretrain_vs_random.py report
"""
import argparse
import json
import os
import random

import mxnet as mx

from gluon_bertft import finetune, pretrain
from gluon_bertft.common import storage
from gluon_bertft.data.wikitext import PretrainIter, WikiTextDataset, read_wiki
from gluon_bertft.models import pretrained
from gluon_bertft.training.devices import set_seed

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
CORPUS = os.path.join(SHARED, 'wikitext-2', 'wiki.train.tokens.partial')
VALID_TEXT = os.path.join(SHARED, 'wikitext-2', 'wiki.valid.tokens')
SNLI = os.path.join(SHARED, 'snli', 'snli_1.0_dev.jsonl')
RUNS = os.path.join(HERE, 'runs')
RESULTS = os.path.join(HERE, 'results', 'pretrain_vs_random.json')
MODELS = {'pretrained': os.path.join(RUNS, 'bert_tiny_wiki.zip'),
          'random': os.path.join(RUNS, 'bert_tiny_random.zip')}
NUM_VALID = 1842  # 9,842 dev pairs -> 8,000 train + 1,842 valid


def run_pretrain(args):
    common = dict(preset='bert.tiny', batch_size=args.batch_size, max_len=64, lr=args.lr,
                  seed=0, resume=True, devices=[mx.cpu()])
    pretrain.pretrain_bert(CORPUS, MODELS['random'], num_steps=0, **common)
    pretrain.pretrain_bert(CORPUS, MODELS['pretrained'], num_steps=args.steps,
                           checkpoint_every=100, log_every=20, **common)


def run_heldout(args):
    """MLM and NSP loss of both checkpoints on WikiText-2's validation text (train vocabulary)."""
    results = load_results()
    for init, model in MODELS.items():
        bert, vocab = pretrained.load_pretrained_model(model, devices=[mx.cpu()])
        set_seed(0)
        data = WikiTextDataset(read_wiki(VALID_TEXT), 64, vocab)
        mlm, nsp = pretrain.evaluate_loss_bert(bert, PretrainIter(data, 256, shuffle=False),
                                               len(vocab), [mx.cpu()])
        results[f'heldout/{init}'] = dict(mlm=mlm, nsp=nsp, pairs=len(data))
        print(f'{init}: held-out MLM loss {mlm:.3f}, NSP loss {nsp:.3f} on {len(data)} pairs')
    storage.write_json(RESULTS, results)


def split_snli():
    """A fixed train/valid split of the SNLI dev pairs, written as two .jsonl files."""
    with open(SNLI, encoding='utf-8') as f:
        lines = [line for line in f if line.strip()]
    random.Random(0).shuffle(lines)
    paths = [os.path.join(RUNS, f'snli_{name}.jsonl') for name in ('train', 'valid')]
    for path, part in zip(paths, (lines[NUM_VALID:], lines[:NUM_VALID])):
        with open(path, 'w', encoding='utf-8') as f:
            f.writelines(part)
    return paths


def run_finetune(args):
    train_file, valid_file = split_snli()
    results = load_results()
    for size in args.sizes:
        for seed in args.seeds:
            for init, model in MODELS.items():
                key = f'{init}/{size}/{seed}'
                if key in results:
                    continue
                print(f'== {key}', flush=True)
                _, _, history = finetune.finetune_snli(
                    train_file=train_file, test_file=valid_file, pretrained_model=model,
                    preset=None, num_epochs=args.epochs, batch_size=32, lr=1e-4,
                    max_examples=size, seed=seed, devices=[mx.cpu()])
                results[key] = history
                storage.write_json(RESULTS, results)


def load_results():
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS, encoding='utf-8') as f:
        return json.load(f)


def mean(xs):
    return sum(xs) / len(xs)


def report(args):
    """Markdown table of final/best validation accuracy and the curves PNG."""
    results = load_results()
    sizes = sorted({int(k.split('/')[1]) for k in results if not k.startswith('heldout/')})
    curves = {}
    print('| labelled pairs | random init: final (best) | pretrained: final (best) | gain (final) | seeds |')
    print('|---|---|---|---|---|')
    for size in sizes:
        row = {}
        for init in MODELS:
            runs = [h['test_acc'] for k, h in results.items()
                    if k.startswith(f'{init}/{size}/')]
            fits = [h['train_acc'] for k, h in results.items()
                    if k.startswith(f'{init}/{size}/')]
            curves[init, size] = [[mean(c) for c in zip(*r)] for r in (runs, fits)]
            row[init] = (mean([r[-1] for r in runs]), mean([max(r) for r in runs]), len(runs))
        r, p = row['random'], row['pretrained']
        print(f'| {size} | {r[0]:.3f} ({r[1]:.3f}) | {p[0]:.3f} ({p[1]:.3f}) | '
              f'{p[0] - r[0]:+.3f} | {min(r[2], p[2])} |')
    for init in MODELS:
        h = results.get(f'heldout/{init}')
        if h:
            print(f'{init}: MLM loss {h["mlm"]:.3f}, NSP loss {h["nsp"]:.3f} on the {h["pairs"]} '
                  'pairs of wiki.valid.tokens')
    plot_curves(curves, sizes, os.path.join(ROOT, 'docs', 'pretraining_finetune_curves.png'))


def plot_curves(curves, sizes, path):
    """Validation (solid) and training (dotted) accuracy per epoch, mean over seeds."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3), sharey=True)
    for ax, size in zip(axes, sizes):
        for init, color in (('random', 'b'), ('pretrained', 'r')):
            valid, fit = curves[init, size]
            epochs = range(1, len(valid) + 1)
            ax.plot(epochs, valid, color + '-', label=f'{init}: valid')
            ax.plot(epochs, fit, color + ':', label=f'{init}: train')
        ax.set_title(f'{size} labelled pairs')
        ax.set_xlabel('epoch')
        ax.grid(True)
    axes[0].set_ylabel('accuracy')
    axes[0].legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, format='png', dpi=80)
    print(f'wrote {path}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('phase', choices=('pretrain', 'heldout', 'finetune', 'report'))
    parser.add_argument('--steps', type=int, default=1600)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=1e-3,
                        help='pretraining lr (the book: 0.01; 1e-3 did better in a 120-step pilot)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 3000, 8000])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--epochs', type=int, default=10)
    args = parser.parse_args()
    os.makedirs(RUNS, exist_ok=True)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    phases = dict(pretrain=run_pretrain, heldout=run_heldout, finetune=run_finetune, report=report)
    phases[args.phase](args)


if __name__ == '__main__':
    main()
