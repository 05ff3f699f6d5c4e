"""``python -m gluon_bertft finetune|distill|evaluate|predict|explain|quantize|export|pretrain|launch``: parse, call the library, print.

The ``finetune`` and ``pretrain`` options are the fields of :class:`~gluon_bertft.config.FinetuneConfig`
and :class:`~gluon_bertft.config.PretrainConfig`; ``--help`` shows every default. Bad input
ends with one ``error: ...`` line naming the file, line, field or option, and exit code 2.
"""
import argparse
import sys

from .common.errors import ConfigError, DataError, PretrainedError
from .tasks import RAW_INPUTS, raw_input_help
from .common.outputs import FILE_RULE, FOLDER_RULE, check_out_folder, is_stdout
from .common.values import fraction, positive, unit_interval
from .config import (DISTILL_SKIP, DistillConfig, FinetuneConfig, PretrainConfig, add_options,
                     from_args)

EPILOG = 'Tasks, data formats and examples: README.md and docs/tasks.md'
MAX_MESSAGE = 1000  # characters of an error message
BATCH_SIZE = 64  # evaluate's and predict --data's examples per forward pass
STDIN = ("or - for standard input (JSON lines when it starts with {; else read as a file "
         "without an extension: TSV, SNLI's .txt)")

DEVICES_HELP = 'auto (all GPUs, else the CPU), cpu, gpu, or e.g. cpu:0,cpu:1'


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each default shown once: not for options without one, nor where the help gives it."""

    def _get_help_string(self, action):
        text = action.help or ''
        if action.default in (None, False, argparse.SUPPRESS) or 'default' in text:
            return text
        return super()._get_help_string(action)


MAX_UNKNOWN_HELP = ('stop (exit code 2) when more than this share of the characters of the '
                    'input (of a file: its first 1,000 rows) fall into unknown tokens of the '
                    "model's vocabulary; a warning says so above 0.3 (docs/chinese.md)")


def warn(message):
    """A warning of ``evaluate``, ``predict``, ``explain``: to standard error."""
    print(message, file=sys.stderr)


def add_max_unknown(parser):
    parser.add_argument('--max-unknown', type=fraction, help=MAX_UNKNOWN_HELP)


def add_run_options(parser):
    """``--batch-size``, ``--devices``, ``--encoding`` and ``--max-unknown`` of ``evaluate``
    and ``predict``."""
    parser.add_argument('--batch-size', type=positive, default=BATCH_SIZE,
                        help=f'examples per forward pass (default {BATCH_SIZE}; predict: with --data)')
    parser.add_argument('--devices', default='auto', help=DEVICES_HELP)
    parser.add_argument('--encoding', help="text encoding of --data, e.g. cp1252 or utf-16-le "
                        "(default: the model's training data's)")
    add_max_unknown(parser)


def add_raw_inputs(parser):
    """The raw-input options of ``predict`` and ``explain``: every task's ``RAW_INPUTS``
    (a model refuses those its task does not take)."""
    for name in RAW_INPUTS:
        parser.add_argument(f'--{name.replace("_", "-")}', help=raw_input_help(name))


def add_distill(sub, fmt):
    """``distill``: the fields of :class:`~gluon_bertft.config.DistillConfig` but those the
    teacher decides (``DISTILL_SKIP``)."""
    parser = sub.add_parser('distill', help='a fine-tuned model (the teacher) teaches a smaller '
                            'student its task (docs/distillation.md)', epilog=EPILOG, **fmt)
    add_options(parser, DistillConfig, skip=DISTILL_SKIP)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m gluon_bertft', epilog=EPILOG,
        description='Fine-tune BERT on SNLI (D2L §16.7) and the other tasks of §16.6 with Gluon.')
    sub = parser.add_subparsers(dest='command', required=True)
    fmt = dict(formatter_class=HelpFormatter)

    ft = sub.add_parser('finetune', help="fine-tune BERT on a task (defaults: the book's §16.7 run)",
                        epilog=EPILOG, **fmt)
    add_options(ft, FinetuneConfig)

    add_distill(sub, fmt)

    ev = sub.add_parser('evaluate', help="a saved model's metrics on a data file", **fmt)
    ev.add_argument('--model', default='runs/snli/model', help='a saved model folder (OUT/model), or a Hugging Face task folder (docs/export.md)')
    ev.add_argument('--data', required=True, help=f"a file read as the model's training data, {STDIN}")
    add_run_options(ev)

    add_predict(sub, fmt)

    ex = sub.add_parser('explain', help="why a saved model predicts what it does: token "
                        "attributions and attention (docs/explain.md)", **fmt)
    ex.add_argument('--model', default='runs/snli/model', help='a saved model folder (OUT/model), or a Hugging Face task folder (docs/export.md)')
    add_raw_inputs(ex)
    ex.add_argument('--method', choices=('ig', 'gradxinput'), default='ig',
                    help='integrated gradients, or gradient x input (fast, no completeness)')
    ex.add_argument('--steps', type=positive, default=32, help='integration nodes (ig), at most 1024')
    ex.add_argument('--label', help='classifiers: the class to explain, its display name or '
                                    'stored label (default: the prediction)')
    ex.add_argument('--word', type=int, help='tag: the word to explain, 0-based (default: the '
                                             'first word of every predicted entity or chunk; '
                                             'plain tags such as POS: every word)')
    ex.add_argument('--layer', type=int, help='attention map: layer, 0-based (default: the last)')
    ex.add_argument('--head', type=head_choice, default='mean',
                    help="attention map: head, 0-based, or 'mean'")
    ex.add_argument('--out', default='explanation', help='writes OUT/explanation.json and '
                    f'OUT/explanation.png, together; OUT is {FOLDER_RULE}')
    ex.add_argument('--devices', default='auto', help=DEVICES_HELP)
    add_max_unknown(ex)

    add_export(sub, fmt)
    add_quantize(sub, fmt)

    pt = sub.add_parser('pretrain', help='pretrain BERT with MLM + NSP on WikiText or plain text (D2L §15.10)',
                        **fmt)
    add_options(pt, PretrainConfig)

    from .training.launch import add_arguments
    add_arguments(sub.add_parser(
        'launch', help='run finetune or pretrain on several processes or machines over the '
                       'distributed kvstore (docs/scaleout.md)',
        usage='python -m gluon_bertft launch -n WORKERS [-s SERVERS] [--hosts FILE] [options] '
              '-- finetune|pretrain [options]'))
    return parser


def add_predict(sub, fmt):
    """``predict``: raw input (a line of text, or ``--json``'s record) or a whole file."""
    pr = sub.add_parser('predict', help='predict for raw input, or for every input of a file', **fmt)
    pr.add_argument('--model', default='runs/snli/model', help='a saved model folder (OUT/model), or a Hugging Face task folder (docs/export.md)')
    add_raw_inputs(pr)
    pr.add_argument('--data', help="predict every input of this file (read as the model's "
                                   f"training data; labels optional), {STDIN}")
    pr.add_argument('--output', help='with --data: where to write the predictions: a .jsonl or '
                    '.csv file (the extension gives the format), or - for JSON lines on standard '
                    f'output (other messages go to standard error); {FILE_RULE}')
    pr.add_argument('--json', action='store_true', help='raw input: print the prediction as '
                    'the JSON record --data writes (where, label and probabilities, score, '
                    'words and tags, answer), instead of a line of text')
    add_run_options(pr)
    pr.set_defaults(batch_size=None)  # applies with --data only: refused without it


def add_export(sub, fmt):
    """``export --model DIR --format F --out OUT`` (docs/export.md); the formats are
    :data:`gluon_bertft.export.FORMATS`' entries."""
    from .export import FORMATS
    ex = sub.add_parser('export', help='write a saved model in a format other software reads '
                        '(docs/export.md)', **fmt)
    ex.add_argument('--model', required=True, help='a saved model folder (OUT/model), or a '
                    'Hugging Face task folder')
    ex.add_argument('--format', required=True, choices=list(FORMATS),
                    help='; '.join(f'{name}: {f.help}' for name, f in FORMATS.items()))
    ex.add_argument('--out', required=True, help=f'the folder to write; {FOLDER_RULE}')


def add_quantize(sub, fmt):
    """``quantize``: a calibrated INT8 graph folder of a model folder (docs/speed.md)."""
    qu = sub.add_parser('quantize', help='a calibrated INT8 copy of a saved model, for fast '
                        'CPU inference (docs/speed.md)', **fmt)
    qu.add_argument('--model', required=True, help='a saved model folder (OUT/model), or a '
                    'Hugging Face task folder')
    qu.add_argument('--calibration', required=True, help="rows in the model's training format "
                    '(labels ignored) to calibrate on')
    qu.add_argument('--out', required=True, help='the INT8 model folder (graph, tokenizer, '
                    f'config.json and the fp32 model.params for explain); {FOLDER_RULE}')
    qu.add_argument('--calib-mode', default='customize',
                    help='activation ranges: naive (min/max), entropy (KL-optimal), or '
                    "customize (min/max with GluonNLP's BERT clipping)")
    qu.add_argument('--calib-rows', type=positive, default=256,
                    help='calibrate on at most this many rows (a seeded sample)')
    qu.add_argument('--min-agreement', type=unit_interval, default=0.99,
                    help='keep the layers that harm most in fp32 until the INT8 graph picks the '
                    "fp32 graph's argmax on this share of the calibration outputs")
    qu.add_argument('--devices', default='cpu', help='cpu (INT8 is a CPU path)')
    qu.add_argument('--encoding', help="text encoding of --calibration, e.g. cp1252 or "
                    "utf-16 (default: the model's training data's)")
    add_max_unknown(qu)


def head_choice(value):
    """``--head``: ``mean`` or a whole number."""
    if value == 'mean':
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give a head number or 'mean'") from None


def explain(args):
    """``explain``: print the explanation, write OUT/explanation.json and OUT/explanation.png
    (the folder replaced as a whole, both files at once)."""
    from .inference import graph, predict
    from .inference.explain import explain as explain_input
    from .inference.explain import render
    from .inference.explain_plot import FILES, save_explanation
    from .training.devices import parse_devices
    check_out_folder(args.out, '--out', [('--model', args.model)], names=FILES)
    note = graph.check_fp32_params(args.model)
    if note:
        print(note)
    net, vocab, task = predict.load_model(args.model, parse_devices(args.devices)[:1], fp32=True)
    found = explain_input(net, vocab, task, method=args.method, steps=args.steps,
                          label=args.label, word=args.word, layer=args.layer, head=args.head,
                          max_unknown=args.max_unknown, log=warn,
                          **{k: getattr(args, k) for k in RAW_INPUTS})
    print(render(found, color=sys.stdout.isatty()))
    paths = save_explanation(found, args.out)
    print(f'wrote {paths[0]} and {paths[1]}')


def predict_data(args):
    """``predict --data F --output P``: every input of F, to the file P or (``-``) to standard
    output as JSON lines, every other message then to standard error."""
    from .inference import predict
    from .training.devices import parse_devices
    if args.output is None:
        raise ConfigError('predict --data: give --output (a .jsonl or .csv file, or - for '
                          'standard output)')
    if args.json:
        raise ConfigError('--json: applies to raw input (--text, ...); with --data, --output '
                          'gives the format (.jsonl, or - for JSON lines on standard output)')
    for name in RAW_INPUTS:
        if getattr(args, name) is not None:
            raise ConfigError(f'--{name.replace("_", "-")}: not with --data (the inputs are '
                              'read from the file)')
    say = (lambda *a: print(*a, file=sys.stderr)) if is_stdout(args.output) else print
    n = predict.predict_file(args.model, args.data, args.output, args.batch_size or BATCH_SIZE,
                             parse_devices(args.devices), log=say, encoding=args.encoding,
                             max_unknown=args.max_unknown)
    say(f'wrote {n} predictions to {"standard output" if is_stdout(args.output) else args.output}')


def predict_text(args):
    """``predict --text ...``: one line (``negative 0.93 (positive 0.07)``, the score, word/tag
    pairs, the answer and its score), or with ``--json`` the record ``--data`` writes."""
    import json
    from .inference import predict
    from .training.devices import parse_devices
    net, vocab, task = predict.load_model(args.model, parse_devices(args.devices)[:1])
    record = predict.predict_record(net, vocab, task, args.max_unknown, warn,
                                    **{k: getattr(args, k) for k in RAW_INPUTS})
    print(json.dumps(record, ensure_ascii=False) if args.json else predict.describe_prediction(record))


def run(args):
    """Carry out a parsed command (MXNet is imported here, so that --help answers at once).
    The switches' environment variables are checked first, for every command (a bad value is
    named even where the command does not read it)."""
    from .common.metrics import format_metrics
    from .config import train_switch
    from .inference import predict
    from .inference.fast import check_switches
    from .training.devices import parse_devices
    check_switches()
    train_switch()
    if args.command == 'finetune':
        from .finetune import finetune
        config = from_args(FinetuneConfig, args)
        config.out = f'runs/{config.task}' if config.out is None else config.out
        finetune(config)
    elif args.command == 'distill':
        from .distill import distill
        config = from_args(DistillConfig, args)
        config.out = 'runs/distill' if config.out is None else config.out
        distill(config)
    elif args.command == 'pretrain':
        from .pretrain import pretrain
        pretrain(from_args(PretrainConfig, args))
    elif args.command == 'explain':
        explain(args)
    elif args.command == 'quantize':
        from .inference.quantize import quantize
        quantize(args.model, args.calibration, args.out, args.calib_mode, args.calib_rows,
                 parse_devices(args.devices), options=dict(
                     min_agreement=args.min_agreement, encoding=args.encoding,
                     max_unknown=args.max_unknown))
    elif args.command == 'export':
        from .export import export
        export(args.model, args.format, args.out)
    elif args.command == 'evaluate':
        report = predict.evaluate_file(args.model, args.data, args.batch_size,
                                       parse_devices(args.devices), args.encoding,
                                       args.max_unknown, log=warn)
        print(f'{format_metrics(report)} on {args.data}')
    elif args.data is not None:
        predict_data(args)
    else:
        if args.output is not None:
            raise ConfigError('--output: applies with --data (predictions for a whole file)')
        if args.encoding is not None:
            raise ConfigError('--encoding: applies with --data (the file to read)')
        if args.batch_size is not None:
            raise ConfigError('--batch-size: applies with --data (one raw input is one example)')
        predict_text(args)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'launch':
        from .training import launch
        return launch.main(args)
    try:
        run(args)
    except (DataError, PretrainedError, ConfigError, ValueError, OSError) as e:
        message = str(e)
        if len(message) > MAX_MESSAGE:  # one that quotes input, past errors.shorten's reach
            message = f'{message[:MAX_MESSAGE - 40]}... ({len(message)} characters)'
        print(f'error: {message}', file=sys.stderr)
        return 2
    return 0
