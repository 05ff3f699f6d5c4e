"""``python -m gluon_bertft finetune|evaluate|predict``: parse, call the library, print."""
import argparse
import sys

from .data.snli import DataError
from .pretrained import PRESETS, PretrainedError


def _positive(value):
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f'{value}: must be a positive integer')
    return n


def _fraction(value):
    x = float(value)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f'{value}: must be in [0, 1)')
    return x


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m gluon_bertft',
                                     description='Fine-tune BERT on SNLI (D2L §16.7) with Gluon.')
    sub = parser.add_subparsers(dest='command', required=True)

    ft = sub.add_parser('finetune', help="fine-tune BERTClassifier (defaults: the book's run)")
    ft.add_argument('--data', default='SNLI',
                    help='SNLI folder with snli_1.0_{train,test}.{txt,jsonl}, or the hub name SNLI '
                         '(downloaded; default)')
    ft.add_argument('--train', help='training file (.txt or .jsonl); overrides --data')
    ft.add_argument('--test', help='test file; without it --test-fraction of --train is held back')
    ft.add_argument('--test-fraction', type=_fraction, default=0.1)
    ft.add_argument('--valid-fraction', type=_fraction, default=0.0,
                    help='hold out this fraction of training pairs, report it per epoch and keep '
                         'the best epoch')
    ft.add_argument('--pretrained', default='bert.small',
                    help="hub name (bert.small, bert.base), a .zip or folder with vocab.json + "
                         "pretrained.params, or 'random' for random initialization")
    ft.add_argument('--preset', default=None, choices=sorted(PRESETS),
                    help='architecture (default: the hub name, else read from the files; '
                         'bert.small for random)')
    ft.add_argument('--epochs', type=_positive, default=5)
    ft.add_argument('--batch-size', type=_positive, default=512)
    ft.add_argument('--max-len', type=_positive, default=128)
    ft.add_argument('--lr', type=float, default=1e-4)
    ft.add_argument('--max-examples', type=_positive, help='use at most this many training pairs')
    ft.add_argument('--trainable-blocks', type=int, default=None,
                    help='train the task layer plus the top K encoder blocks (default: all)')
    ft.add_argument('--devices', default='auto', help="auto, cpu, gpu, or e.g. cpu:0,cpu:1")
    ft.add_argument('--seed', type=int, default=0)
    ft.add_argument('--dropout', type=float, default=0.1)
    ft.add_argument('--out', default='runs/snli', help='output folder (default: runs/snli)')
    ft.add_argument('--book-batches', action='store_true',
                    help='pad every batch to --max-len as the book does (slower, same result)')
    ft.add_argument('--no-hybridize', action='store_true', help='run the network imperatively')

    ev = sub.add_parser('evaluate', help='accuracy of a saved classifier on an SNLI file')
    ev.add_argument('--model', default='runs/snli/classifier')
    ev.add_argument('--data', required=True, help='SNLI .txt or .jsonl file')
    ev.add_argument('--batch-size', type=_positive, default=512)
    ev.add_argument('--devices', default='auto')

    pr = sub.add_parser('predict', help='label premise/hypothesis pairs with a saved classifier')
    pr.add_argument('--model', default='runs/snli/classifier')
    pr.add_argument('--premise', required=True)
    pr.add_argument('--hypothesis', required=True)
    pr.add_argument('--devices', default='auto')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # imported here so that --help answers without loading MXNet
    from . import finetune
    from .heads import predict_snli
    from .train import parse_devices
    try:
        devices = parse_devices(args.devices)
        if args.command == 'finetune':
            preset = args.preset or ('bert.small' if args.pretrained == 'random' else None)
            finetune.finetune_snli(
                train_file=args.train, test_file=args.test, data=args.data,
                pretrained_model=args.pretrained, preset=preset, num_epochs=args.epochs,
                batch_size=args.batch_size, max_len=args.max_len, lr=args.lr,
                max_examples=args.max_examples, test_fraction=args.test_fraction,
                valid_fraction=args.valid_fraction, num_trainable_blocks=args.trainable_blocks,
                devices=devices, seed=args.seed, out=args.out, fast=not args.book_batches,
                hybridize=not args.no_hybridize, dropout=args.dropout)
        elif args.command == 'evaluate':
            acc = finetune.evaluate_file(args.model, args.data, args.batch_size, devices)
            print(f'test acc {acc:.3f} on {args.data}')
        else:
            net, vocab, config = finetune.load_classifier(args.model, devices)
            print(predict_snli(net, vocab, args.premise, args.hypothesis, config['max_len']))
    except (DataError, PretrainedError, ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0
