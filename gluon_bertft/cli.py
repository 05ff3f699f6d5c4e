"""``python -m gluon_bertft finetune|evaluate|predict``: parse, call the library, print."""
import argparse
import sys

from .data.snli import DataError
from .precision import DTYPES
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


TASK_NAMES = ('snli', 'classify', 'pair-classify', 'regress', 'tag', 'qa')


def _columns(value):
    return [c.strip() for c in value.split(',')] if value else None


def _finetune_task(args, devices):
    from . import distributed, tasks
    if args.kvstore or distributed.in_worker():
        raise ValueError(f'--task {args.task}: distributed fine-tuning supports --task snli only')
    if args.dtype != 'float32':
        raise ValueError(f'--task {args.task}: --dtype {args.dtype} supports --task snli only')
    task = tasks.make_task(args.task, args.max_len, args.format, _columns(args.text_columns),
                           args.label_column, args.header, args.encoding, args.tokenizer,
                           args.stride, args.max_query_len, args.max_answer_len)
    if not args.train:
        raise ValueError(f'--task {args.task}: give the training file (--train)')
    tasks.finetune_task(task, args.train, args.test, args.pretrained, args.preset,
                        args.epochs, args.batch_size, args.lr, args.max_examples,
                        args.max_test_examples, args.test_fraction, args.valid_fraction,
                        args.trainable_blocks, devices, args.seed,
                        args.out or f'runs/{args.task}', not args.no_hybridize, args.dropout,
                        lazy_embedding=args.lazy_embedding)


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m gluon_bertft',
                                     description='Fine-tune BERT on SNLI (D2L §16.7) and the other tasks of §16.6 with Gluon.')
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
    ft.add_argument('--out', help='output folder (default: runs/TASK)')
    ft.add_argument('--book-batches', action='store_true',
                    help='pad every batch to --max-len as the book does (slower, same result)')
    ft.add_argument('--no-hybridize', action='store_true', help='run the network imperatively')
    ft.add_argument('--lazy-embedding', action='store_true',
                    help="Adam updates only the embedding rows each batch uses (not the book's "
                         "Adam; README: Speed)")
    ft.add_argument('--dtype', choices=DTYPES, default='float32',
                    help='float16: mixed precision on GPUs (snli; refused on CPUs)')
    ft.add_argument('--checkpoint-every', type=_positive,
                    help='write OUT/checkpoint every N steps and after every epoch')
    ft.add_argument('--resume', action='store_true',
                    help='continue from OUT/checkpoint if there is one (same settings)')
    ft.add_argument('--kvstore', choices=('device', 'dist_sync', 'dist_device_sync'),
                    help='device (one machine), or a distributed kvstore: the default in a worker '
                         'started by launch (dist_sync); see docs/scaleout.md')
    tk = ft.add_argument_group('tasks of §16.6 (docs/tasks.md); --train is then required')
    tk.add_argument('--task', default='snli', choices=TASK_NAMES,
                    help='snli (default, §16.7), classify (one text), pair-classify, regress '
                         '(one or two texts), tag (CoNLL), qa (SQuAD v1.1)')
    tk.add_argument('--format', choices=('tsv', 'csv', 'jsonl', 'lines'),
                    help='table format (default: by extension; tsv). lines: one text per line, '
                         'the label is the file extension, --train a.pos,a.neg')
    tk.add_argument('--text-columns', help='comma-separated header names or 0-based numbers '
                                           '(default: sentence; pairs: sentence1,sentence2)')
    tk.add_argument('--label-column', help='header name or 0-based number (default: label; '
                                           'regress: score)')
    tk.add_argument('--header', dest='header', action='store_true', default=None,
                    help='line 1 is a header (default: when a column is given by name)')
    tk.add_argument('--no-header', dest='header', action='store_false')
    tk.add_argument('--encoding', default='utf-8', help='text encoding, e.g. cp1252')
    tk.add_argument('--tokenizer', choices=('whitespace', 'basic'),
                    help="whitespace (the book's, default) or basic (also splits punctuation; qa)")
    tk.add_argument('--max-test-examples', type=_positive, help='use at most this many test examples')
    tk.add_argument('--stride', type=_positive, default=64, help='qa: passage window step, tokens')
    tk.add_argument('--max-query-len', type=_positive, default=64, help='qa: question tokens kept')
    tk.add_argument('--max-answer-len', type=_positive, default=30, help='qa: longest answer, tokens')

    ev = sub.add_parser('evaluate', help="a saved model's metric on a data file")
    ev.add_argument('--model', default='runs/snli/classifier',
                    help='runs/snli/classifier, or runs/TASK/model of another task')
    ev.add_argument('--data', required=True,
                    help="SNLI .txt or .jsonl file, or a file read as the model's training file")
    ev.add_argument('--batch-size', type=_positive, default=512)
    ev.add_argument('--devices', default='auto')

    pr = sub.add_parser('predict', help='predict for raw input with a saved model')
    pr.add_argument('--model', default='runs/snli/classifier')
    pr.add_argument('--premise', help='snli')
    pr.add_argument('--hypothesis', help='snli')
    pr.add_argument('--text', help='classify, regress, pair-classify; tag: words split by spaces')
    pr.add_argument('--text-b', help='the second text of pair-classify and regress')
    pr.add_argument('--question', help='qa')
    pr.add_argument('--passage', help='qa')
    pr.add_argument('--devices', default='auto')

    pt = sub.add_parser('pretrain', help="pretrain BERT with MLM + NSP on WikiText (D2L §15.10)")
    pt.add_argument('--corpus', required=True,
                    help='a folder with wiki.train.tokens, or a WikiText .tokens file')
    pt.add_argument('--preset', default='bert.small',
                    help="architecture: bert.small, bert.base, or bert.tiny (the book's §15.10 "
                         "model: 2 blocks, 128 hidden, 2 heads)")
    pt.add_argument('--steps', type=int, default=1000,
                    help='optimizer steps in all (0: save the random initial weights)')
    pt.add_argument('--out', required=True,
                    help='output .zip or folder (vocab.json + pretrained.params + config.json)')
    pt.add_argument('--batch-size', type=_positive, default=512)
    pt.add_argument('--max-len', type=_positive, default=64)
    pt.add_argument('--lr', type=float, default=0.01, help="Adam learning rate (the book's 0.01)")
    pt.add_argument('--dropout', type=float, default=0.2)
    pt.add_argument('--devices', default='auto', help="auto, cpu, gpu, or e.g. cpu:0,cpu:1")
    pt.add_argument('--seed', type=int, default=0)
    pt.add_argument('--resume', action='store_true',
                    help='continue from the checkpoint if there is one (same settings)')
    pt.add_argument('--checkpoint', help='checkpoint folder (default: OUT without .zip, plus .ckpt)')
    pt.add_argument('--checkpoint-every', type=_positive, default=50, help='steps between checkpoints')
    pt.add_argument('--book-batches', action='store_true',
                    help='pad every batch to --max-len as the book does (slower, same result)')

    from .launch import add_arguments
    add_arguments(sub.add_parser(
        'launch', help='run finetune on several processes or machines over the distributed '
                       'kvstore (docs/scaleout.md)',
        usage='python -m gluon_bertft launch -n WORKERS [-s SERVERS] [--hosts FILE] [options] '
              '-- finetune [finetune options]'))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'launch':
        from . import launch
        return launch.main(args)
    # imported here so that --help answers without loading MXNet
    from . import finetune, tasks
    from .heads import predict_snli
    from .train import parse_devices
    try:
        devices = parse_devices(args.devices)
        if args.command == 'finetune' and args.task != 'snli':
            _finetune_task(args, devices)
        elif args.command == 'evaluate' and tasks.task_of(args.model):
            report = tasks.evaluate_file(args.model, args.data, args.batch_size, devices)
            print(f'{tasks.format_metrics(report)} on {args.data}')
        elif args.command == 'predict' and tasks.task_of(args.model):
            net, vocab, task = tasks.load_model(args.model, devices[:1])
            print(tasks.predict(net, vocab, task, text=args.text, text_b=args.text_b,
                                question=args.question, passage=args.passage))
        elif args.command == 'pretrain':
            from .pretrain import pretrain_bert
            pretrain_bert(args.corpus, args.out, preset=args.preset, num_steps=args.steps,
                          batch_size=args.batch_size, max_len=args.max_len, lr=args.lr,
                          dropout=args.dropout, devices=devices, seed=args.seed,
                          resume=args.resume, checkpoint=args.checkpoint,
                          checkpoint_every=args.checkpoint_every, trim=not args.book_batches)
        elif args.command == 'finetune':
            preset = args.preset or ('bert.small' if args.pretrained == 'random' else None)
            finetune.finetune_snli(
                train_file=args.train, test_file=args.test, data=args.data,
                pretrained_model=args.pretrained, preset=preset, num_epochs=args.epochs,
                batch_size=args.batch_size, max_len=args.max_len, lr=args.lr,
                max_examples=args.max_examples, test_fraction=args.test_fraction,
                valid_fraction=args.valid_fraction, num_trainable_blocks=args.trainable_blocks,
                devices=devices, seed=args.seed, out=args.out or 'runs/snli', fast=not args.book_batches,
                hybridize=not args.no_hybridize, dropout=args.dropout, kvstore=args.kvstore,
                checkpoint_every=args.checkpoint_every, resume=args.resume, dtype=args.dtype,
                lazy_embedding=args.lazy_embedding)
        elif args.command == 'evaluate':
            acc = finetune.evaluate_file(args.model, args.data, args.batch_size, devices)
            print(f'test acc {acc:.3f} on {args.data}')
        else:
            if not (args.premise and args.hypothesis):
                raise ValueError(f'{args.model} is an SNLI classifier: give --premise and --hypothesis')
            net, vocab, config = finetune.load_classifier(args.model, devices)
            print(predict_snli(net, vocab, args.premise, args.hypothesis, config['seq_len']))
    except (DataError, PretrainedError, ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0
