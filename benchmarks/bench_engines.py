"""Inference engines side by side (issue 21, item 4): the package's fp32 (and INT8) against
Hugging Face eager fp32, torch dynamic INT8, and ONNX Runtime fp32 and dynamic INT8, all from
the same weights and on the same batches, with examples/s, CPU use and accuracy on real data.

Cases (``--cases``):

* ``sst2``: a fine-tuned MiniLM classifier (``--sst2-model``, default the shared reference
  model) on SST-2's 872 dev sentences;
* ``conll``: a fine-tuned MiniLM tagger (``--conll-model``) on CoNLL-2003 ``eng.testa``
  (entity F1);
* ``bert.small``: the book's shape (2 blocks, 256 hidden, 4 heads, FFN 512, ReLU, no
  embedding LayerNorm) with random weights, a 2-class head, on the SST-2 batches (timing
  only; its accuracy means nothing).

The batches are ``evaluate``'s: the model's own reader and tokenizer, batches of
``--batch-size`` from ``make_iter(..., sort=True)`` (length-sorted, each trimmed to its
longest example), written once to an ``.npz`` that every engine reads. The package's weights
are written in Hugging Face's names (``models/hf_tasks.py``'s table, ``export --format
hf``'s) for the peer process (``--peer-python``: torch,
transformers, onnxruntime; this environment never imports them), which builds
``BertForSequenceClassification`` / ``BertForTokenClassification`` from them, in eval mode:

* ``hf_fp32``: PyTorch eager under ``torch.inference_mode()``;
* ``torch_int8``: ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` (qint8);
* ``ort_fp32``: ONNX Runtime on the model exported by ``torch.onnx.export`` (dynamic batch
  and sequence axes);
* ``ort_int8``: ``onnxruntime.quantization.quantize_dynamic`` of that file (QInt8 weights).

The package's engines: ``package_fp32`` (``inference_net(net)``, the default fast path of
``predict``/``evaluate``), ``package_plain`` (the hybridized network without the fast
copy), and ``package_int8`` for a case given ``--int8 CASE=DIR`` (an INT8 folder that
``quantize`` wrote from that case's model, loaded as ``predict`` loads it; else reported
absent). Every engine first makes one untimed pass over every batch (every shape compiled;
its outputs give the metrics); then ``--repeats`` rounds each time every engine's pass over
the batches (every ``--timed-every``-th one: a spread of the sorted lengths) in turn (the package's in this process, the peers' in
theirs, a pause between so that idle threads stop spinning). Reported per engine: median
examples/s, CPU use (process CPU seconds / wall seconds), the task's metrics on the outputs
of the last pass (``task.score``, the orders restored as ``evaluate`` restores them), and
the argmax agreement with ``package_plain``. Threads: the package's own setting (one OpenMP
thread per core); torch ``set_num_threads`` and ONNX Runtime ``intra_op_num_threads`` the
same number.

    flock /tmp/heavy.lock python benchmarks/bench_engines.py --peer-python /work/peer/bin/python
    python benchmarks/bench_engines.py --repeats 0 --peer-python ...   # metrics only, no lock
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START_ENV = dict(os.environ)
sys.path[:0] = [os.path.dirname(HERE), HERE]
PEER_ENGINES = ('hf_fp32', 'torch_int8', 'ort_fp32', 'ort_int8')
PAUSE = 0.5


# ---- the peer process (torch, transformers, onnxruntime; never mxnet) ------------------------

class Peer:
    """Hugging Face BERT from the package's weights, in four engines."""

    def __init__(self, threads):
        import torch
        torch.set_num_threads(threads)
        self.torch, self.threads, self.engines = torch, threads, {}

    def build(self, folder):
        import numpy as onp
        import onnxruntime as ort
        import transformers
        from onnxruntime.quantization import QuantType, quantize_dynamic
        torch = self.torch
        meta = json.load(open(os.path.join(folder, 'meta.json')))
        c = meta['bert']
        config = transformers.BertConfig(
            vocab_size=c['vocab_size'], hidden_size=c['num_hiddens'],
            num_hidden_layers=c['num_blks'], num_attention_heads=c['num_heads'],
            intermediate_size=c['ffn_num_hiddens'], hidden_act=c['activation'],
            max_position_embeddings=c['max_len'], type_vocab_size=c['type_vocab_size'],
            layer_norm_eps=c['layer_norm_eps'], num_labels=meta['num_outputs'])
        cls = (transformers.BertForTokenClassification if meta['per_token']
               else transformers.BertForSequenceClassification)
        model = cls(config).eval()
        weights = onp.load(os.path.join(folder, 'hf_weights.npz'))
        state = {k: torch.from_numpy(weights[k]) for k in weights.files}
        missing, unexpected = model.load_state_dict(state, strict=False)
        # the book's shape has no embedding LayerNorm; HF's always has one (left at 1, 0)
        missing = [m for m in missing if not m.endswith('position_ids')
                   and not (m.startswith('bert.embeddings.LayerNorm') and not c['embedding_norm'])]
        if missing or unexpected:
            raise RuntimeError(f'weights do not fit: missing {missing}, unexpected {unexpected}')
        data = onp.load(os.path.join(folder, 'batches.npz'))
        self.batches = []
        for i in range(meta['batches']):
            t, s, v = (data[f'{i}_{f}'] for f in ('tokens', 'segments', 'valid_lens'))
            mask = (onp.arange(t.shape[1])[None, :] < v[:, None]).astype(onp.int64)
            self.batches.append((t.astype(onp.int64), mask, s.astype(onp.int64)))
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        fp32_file, int8_file = (os.path.join(folder, f) for f in ('model.onnx', 'model.int8.onnx'))
        ids, mask, types = (torch.from_numpy(a) for a in self.batches[0])
        axes = {n: {0: 'batch', 1: 'seq'} for n in ('input_ids', 'attention_mask', 'token_type_ids')}
        torch.onnx.export(model, (ids, mask, types), fp32_file, dynamo=False, opset_version=17,
                          input_names=list(axes), output_names=['logits'],
                          dynamic_axes=dict(axes, logits={0: 'batch', 1: 'seq'}
                                            if meta['per_token'] else {0: 'batch'}))
        quantize_dynamic(fp32_file, int8_file, weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        sessions = {k: ort.InferenceSession(f, options, providers=['CPUExecutionProvider'])
                    for k, f in (('ort_fp32', fp32_file), ('ort_int8', int8_file))}

        def eager(net):
            def run(ids, mask, types):
                with torch.inference_mode():
                    return net(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                               token_type_ids=torch.from_numpy(types)).logits.numpy()
            return run

        def onnx(session):
            return lambda ids, mask, types: session.run(None, dict(
                input_ids=ids, attention_mask=mask, token_type_ids=types))[0]
        self.engines = dict(hf_fp32=eager(model), torch_int8=eager(int8),
                            ort_fp32=onnx(sessions['ort_fp32']), ort_int8=onnx(sessions['ort_int8']))
        return dict(torch=torch.__version__, transformers=transformers.__version__,
                    onnxruntime=ort.__version__, threads=torch.get_num_threads(),
                    onnx_bytes={k: os.path.getsize(f) for k, f in (('fp32', fp32_file), ('int8', int8_file))})

    def run(self, engine, out=None, subset=None):
        import numpy as onp
        fn = self.engines[engine]
        batches = self.batches if subset is None else [self.batches[i] for i in subset]
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = [fn(*b) for b in batches]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if out:
            onp.savez(out, **{str(i): o for i, o in enumerate(outputs)})
        n = sum(b[0].shape[0] for b in batches)
        return dict(examples_per_sec=n / wall, seconds=wall, cpu_per_wall=cpu / wall)


def serve_peer(threads):
    """JSON requests on stdin (build, run, quit), JSON lines on the real stdout."""
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)
    peer = Peer(threads)
    proto.write(json.dumps(dict(ready=True)) + '\n')
    for line in sys.stdin:
        request = json.loads(line)
        if request['op'] == 'quit':
            break
        reply = (peer.build(request['folder']) if request['op'] == 'build'
                 else peer.run(request['engine'], request.get('out'), request.get('subset')))
        proto.write(json.dumps(reply) + '\n')


# ---- the package (this process) ----------------------------------------------------------

def hf_state(net, per_token):
    """``{HF name: numpy array}`` of the package network ``net`` (a classifier or tagger),
    through ``models/hf_tasks.py``'s name table (``export --format hf``'s)."""
    from gluon_bertft.models.hf_tasks import export_names
    params = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    architecture = 'BertForTokenClassification' if per_token else 'BertForSequenceClassification'
    names = export_names(len(net.encoder.blks), architecture, params)
    missing = sorted(set(params) - set(names))
    if missing:
        raise KeyError(f'no Hugging Face name for {missing}')
    return {names[k]: (v[0] if k == 'encoder.pos_embedding' else v) for k, v in params.items()}


def write_case(folder, net, batches, bert_config):
    """Batches, weights and meta of one case into ``folder`` for the peer."""
    import numpy as onp
    arrays = {}
    for i, ((t, s, v), _) in enumerate(batches):
        for f, a in zip(('tokens', 'segments', 'valid_lens'), (t, s, v)):
            arrays[f'{i}_{f}'] = a.asnumpy()
    onp.savez(os.path.join(folder, 'batches.npz'), **arrays)
    per_token = not hasattr(net, 'hidden')
    onp.savez(os.path.join(folder, 'hf_weights.npz'), **hf_state(net, per_token))
    meta = dict(bert=bert_config, batches=len(batches), per_token=per_token,
                num_outputs=net.output._units)
    with open(os.path.join(folder, 'meta.json'), 'w') as f:
        json.dump(meta, f)


def load_case(case, args):
    """``(net, task, rows, dataset, batches, bert_config)`` of a case."""
    import mxnet as mx

    from gluon_bertft.data.batching import make_iter
    from gluon_bertft.inference.predict import load_model, read_with
    from gluon_bertft.models import build
    from gluon_bertft.models.heads import BERTClassifier
    from gluon_bertft.training.devices import set_seed
    model = args.conll_model if case == 'conll' else args.sst2_model
    net, vocab, task = load_model(model, [mx.cpu()])
    rows = read_with(task, args.conll_data if case == 'conll' else args.sst2_data)
    rows = rows[:args.max_examples] if args.max_examples else rows
    dataset = task.encode(rows, vocab, log=lambda *a: None)
    bert_config = json.load(open(os.path.join(model, 'config.json')))['bert']
    if case == 'bert.small':
        set_seed(0)
        bert_config = dict(bert_config, num_blks=2, num_hiddens=256, num_heads=4,
                           ffn_num_hiddens=512, activation='relu', embedding_norm=False,
                           layer_norm_eps=1e-5)
        net = BERTClassifier(build.build_bert(bert_config, dropout=0.0), 2)
        net.initialize(mx.init.Normal(0.02), ctx=mx.cpu())
        net.hybridize(static_alloc=True)
    return net, task, rows, dataset, make_iter(dataset, args.batch_size, False, sort=True), bert_config


def package_engines(net, int8=None):
    """``{name: network}`` of the package's engines, and the INT8 row's status: ``int8``, an
    INT8 graph folder written by ``quantize`` (``--int8 CASE=DIR``), is loaded as ``predict``
    and ``evaluate`` load it (``load_model``: the graph, oneDNN's INT8 operators)."""
    import mxnet as mx

    from gluon_bertft.inference.fast import inference_net
    from gluon_bertft.inference.predict import load_model
    engines = dict(package_plain=net, package_fp32=inference_net(net))
    if not int8:
        return engines, 'absent: no INT8 folder given for this case (--int8 CASE=DIR)'
    engines['package_int8'] = load_model(int8, [mx.cpu()])[0]
    if getattr(engines['package_int8'], 'precision', None) != 'int8':
        raise SystemExit(f'--int8 {int8}: not an INT8 graph folder (python -m gluon_bertft quantize)')
    return engines, f'present: {os.path.abspath(int8)}'


class Replay:
    """A 'network' returning a peer's stored outputs batch by batch (for ``predict_outputs``'s
    order restoring)."""

    def __init__(self, path):
        import numpy as onp
        data = onp.load(path)
        self.outputs, self.i = [data[str(i)] for i in range(len(data.files))], 0

    def __call__(self, X):
        from mxnet import np
        self.i += 1
        return np.array(self.outputs[self.i - 1])


def time_package(net, batches):
    import mxnet as mx

    from gluon_bertft.training.evaluate import predict_outputs
    mx.nd.waitall()
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = predict_outputs(net, batches, [mx.cpu()], progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return outputs, dict(examples_per_sec=len(outputs) / wall, seconds=wall, cpu_per_wall=cpu / wall)


def argmax(outputs):
    import numpy as onp
    return onp.concatenate([onp.asarray(o).argmax(-1).reshape(-1) for o in outputs])


def run_case(case, args, peer, tmp):
    import mxnet as mx
    from gluon_bertft.training.evaluate import predict_outputs
    net, task, rows, dataset, batches, bert_config = load_case(case, args)
    engines, int8_status = package_engines(net, args.int8.get(case))
    out = dict(examples=len(rows), batches=len(batches), package_int8=int8_status, engines={})
    folder = os.path.join(tmp, case.replace('.', '_'))
    os.makedirs(folder)
    names = list(engines)
    if peer:
        write_case(folder, net, batches, bert_config)
        out['peer'] = peer.call(op='build', folder=folder)
        names += list(PEER_ENGINES)
    runs, outputs = {k: [] for k in names}, {}
    # a spread of the lengths (the batches are sorted); a tuple: predict_outputs restores the
    # order of what has a 'sort' attribute, which a list has
    timed = tuple(batches)[::args.timed_every]
    indices = list(range(len(batches)))[::args.timed_every]
    out['timed_batches'] = len(timed)
    out['timed_examples'] = sum(int(b[1].shape[0]) for b in timed)
    full = not args.speed_only  # round 0 over every batch, for the metrics
    for r in range(args.repeats + 1):  # round 0: untimed (shapes compiled, metrics)
        for k in names:
            time.sleep(PAUSE)
            if k in engines:
                result, timing = time_package(engines[k], batches if r == 0 and full else timed)
                outputs[k] = result if r == 0 and full else outputs.get(k)
            else:
                path = os.path.join(folder, f'{k}.npz')
                timing = peer.call(op='run', engine=k, out=path if r == 0 and full else None,
                                   subset=None if r == 0 and full else indices)
                if r == 0 and full:
                    outputs[k] = predict_outputs(Replay(path), batches, [mx.cpu()], progress=False)
            if r:
                runs[k].append(timing)
        print(f'{case} round {r}: ' + ', '.join(f'{k} {runs[k][-1]["examples_per_sec"]:.1f}'
                                                for k in names if r), flush=True)
    reference = argmax(outputs['package_plain']) if full else None
    for k in names:
        out['engines'][k] = dict(repeats=runs[k]) if not full else dict(
            metrics=task.score(outputs[k], rows, dataset),
            argmax_agreement_with_plain=float((argmax(outputs[k]) == reference).mean()),
            repeats=runs[k])
        if runs[k]:
            out['engines'][k].update(
                median_examples_per_sec=statistics.median(x['examples_per_sec'] for x in runs[k]),
                median_cpu_per_wall=statistics.median(x['cpu_per_wall'] for x in runs[k]))
    return out


class PeerProcess:
    def __init__(self, python, threads):
        env = dict(START_ENV, OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen([python, os.path.abspath(__file__), '--serve-peer',
                                         '--threads', str(threads)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.read()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'the peer process exited ({self.process.wait()}); see its stderr')
        return json.loads(line)

    def call(self, **request):
        self.process.stdin.write(json.dumps(request) + '\n')
        self.process.stdin.flush()
        return self.read()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps(dict(op='quit')) + '\n')
            self.process.stdin.flush()
        self.process.wait()


def main():
    shared = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'shared', 'data')
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', nargs='+', default=['sst2', 'bert.small', 'conll'],
                        choices=('sst2', 'conll', 'bert.small'))
    parser.add_argument('--sst2-model', default='/work/models/sst2_minilm/model')
    parser.add_argument('--sst2-data', default=os.path.join(shared, 'sst2', 'dev.tsv'))
    parser.add_argument('--conll-model', default='/work/models/conll_minilm/model')
    parser.add_argument('--conll-data', default=os.path.join(shared, 'conll2003', 'eng.testa'))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed rounds (0: only the untimed pass, for the metrics)')
    parser.add_argument('--speed-only', action='store_true',
                        help='no metrics: the untimed pass too over the timed batches only')
    parser.add_argument('--timed-every', type=int, default=1,
                        help='time every K-th batch only (the metrics use every batch)')
    parser.add_argument('--int8', nargs='+', default=[], metavar='CASE=DIR',
                        help="the package's INT8 engine of a case: an INT8 folder written by "
                             '`quantize` from that case\'s model (e.g. sst2=/work/models/...)')
    parser.add_argument('--max-examples', type=int, help='only the first N examples (smoke runs)')
    parser.add_argument('--peer-python', help='a Python with torch, transformers, onnxruntime')
    parser.add_argument('--out', default=os.path.join(HERE, 'results', 'engines_speed.json'))
    parser.add_argument('--serve-peer', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--threads', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        return serve_peer(args.threads)
    pairs = [a.partition('=') for a in args.int8]
    if any(not d or c not in args.cases for c, _, d in pairs):
        parser.error(f'--int8: CASE=DIR with CASE one of --cases {args.cases}, got {args.int8}')
    args.int8 = {c: d for c, _, d in pairs}
    import gluon_bertft  # noqa: F401 (first: the thread set-up)
    from provenance import header, uptime

    from gluon_bertft.common.storage import write_json
    threads = int(os.environ.get('OMP_NUM_THREADS') or 1)
    report = dict(header('bench_engines.py'), threads=threads, batch_size=args.batch_size,
                  gomp_spincount=os.environ.get('GOMP_SPINCOUNT'), cases={})
    peer = PeerProcess(args.peer_python, threads) if args.peer_python else None
    try:
        with tempfile.TemporaryDirectory(prefix='bench_engines.') as tmp:
            for case in args.cases:
                report['cases'][case] = run_case(case, args, peer, tmp)
                write_json(args.out, dict(report, uptime_after=uptime()))  # each case as it ends
    finally:
        if peer:
            peer.close()
    report['uptime_after'] = uptime()
    write_json(args.out, report)
    for case, out in report['cases'].items():
        for k, e in out['engines'].items():
            metric = {m: round(v, 4) for m, v in e.get('metrics', {}).items() if m in ('accuracy', 'f1')}
            speed = (f'{e["median_examples_per_sec"]:8.1f} ex/s  CPU {e["median_cpu_per_wall"]:.2f}'
                     if e['repeats'] else 'untimed')
            print(f'{case:<10} {k:<14} {speed}  {metric}  agree {e.get("argmax_agreement_with_plain")}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
