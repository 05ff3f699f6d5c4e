"""Use an exported SST-2 classifier elsewhere: transformers and ONNX Runtime on the dev set,
compared with the package's own predictions. Runs in the separate environment with torch,
transformers and onnxruntime (/work/peer), never with the package:

    python -m gluon_bertft predict --model MODEL --data dev.tsv --output pkg.jsonl
    python -m gluon_bertft export --model MODEL --format hf --out OUT
    optimum-cli export onnx --model OUT ONNX/            # optional
    /work/peer/bin/python benchmarks/hf_export_use.py OUT dev.tsv pkg.jsonl [ONNX] > result.json

Prints JSON: dev accuracy of each engine, how many predictions differ from the package's, and
the largest difference of a class probability from the package's.
"""
import csv
import json
import sys

import numpy as onp


def read_dev(path):
    with open(path, encoding='utf-8') as f:
        rows = list(csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [r[1] for r in rows]


def transformers_probs(folder, texts, batch=32):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=128,
                            return_tensors='pt')
            out.append(torch.softmax(model(**enc).logits, -1).numpy())
    return onp.concatenate(out), model.config.id2label


def onnx_probs(onnx_folder, hf_folder, texts, batch=32):
    import onnxruntime
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    session = onnxruntime.InferenceSession(f'{onnx_folder}/model.onnx',
                                           providers=['CPUExecutionProvider'])
    names = {i.name for i in session.get_inputs()}
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=128,
                        return_tensors='np')
        logits = session.run(None, {k: v.astype('int64') for k, v in enc.items() if k in names})[0]
        z = onp.exp(logits - logits.max(-1, keepdims=True))
        out.append(z / z.sum(-1, keepdims=True))
    return onp.concatenate(out)


def main(hf_folder, dev, package_jsonl, onnx_folder=None):
    texts, gold = read_dev(dev)
    with open(package_jsonl, encoding='utf-8') as f:
        package = [json.loads(line) for line in f]
    probs, id2label = transformers_probs(hf_folder, texts)
    names = [id2label[i] for i in range(len(id2label))]
    ours = onp.array([[rec['probabilities'][n] for n in names] for rec in package])
    engines = {'transformers': probs}
    if onnx_folder:
        engines['onnxruntime'] = onnx_probs(onnx_folder, hf_folder, texts)
    result = dict(examples=len(texts), package_accuracy=onp.mean(
        [rec['label'] == g for rec, g in zip(package, gold)]).item())
    for name, p in engines.items():
        predicted = [names[k] for k in p.argmax(1)]
        result[name] = dict(
            accuracy=onp.mean([a == g for a, g in zip(predicted, gold)]).item(),
            labels_differing_from_package=int(sum(a != rec['label'] for a, rec in zip(predicted, package))),
            max_probability_difference=float(onp.abs(p - ours).max()))
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main(*sys.argv[1:])
