"""The field's metrics: accuracy and F1 for classification, CoNLL entity F1 for span tagging
(NER, chunks), token accuracy and per-tag F1 for plain tagging (POS),
SQuAD v1.1 exact match and F1 for QA, Pearson and Spearman for regression.

Entity F1 is computed here, not with a library: chunks are read as the CoNLL-2003
``conlleval`` script reads them (an ``I-X`` that does not continue an ``X`` chunk starts one),
and precision, recall and F1 are micro-averaged over all entities, as conlleval's ``overall``.
SQuAD uses the official v1.1 script's normalisation and returns percentages, as it does.
"""
import collections
import re
import string

import numpy as onp
from scipy import stats

_PUNCTUATION = set(string.punctuation)


def _f1(tp, n_pred, n_gold):
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def classification_report(gold, pred, names):
    """Accuracy, macro-F1 (over the classes in ``gold`` or ``pred``) and the F1 of every class.

    ``gold`` and ``pred`` are sequences of class ids; ``names[i]`` names class ``i``.
    """
    gold, pred = onp.asarray(gold), onp.asarray(pred)
    report = {'accuracy': float((gold == pred).mean())}
    per_class = {}
    for c in sorted(set(gold.tolist()) | set(pred.tolist())):
        tp = int(((gold == c) & (pred == c)).sum())
        per_class[names[int(c)]] = _f1(tp, int((pred == c).sum()), int((gold == c).sum()))[2]
    report['macro_f1'] = float(onp.mean(list(per_class.values())))
    report.update({f'f1[{name}]': f1 for name, f1 in per_class.items()})
    return report


def entity_spans(tags):
    """``{(type, first, last)}``: the entities of a tag sequence, chunked as conlleval does."""
    spans, start = set(), None
    tags = to_iob2(tags) + ['O']
    for i, tag in enumerate(tags):
        if start is not None and not (tag.startswith('I-') and tag[2:] == tags[start][2:]):
            spans.add((tags[start][2:], start, i - 1))
            start = None
        if tag.startswith('B-'):
            start = i
    return spans


def entity_f1(gold_sequences, pred_sequences):
    """Entity-level ``precision``, ``recall`` and ``f1`` over all sentences (conlleval's overall)."""
    tp = n_gold = n_pred = 0
    for gold, pred in zip(gold_sequences, pred_sequences):
        g, p = entity_spans(gold), entity_spans(pred)
        tp, n_gold, n_pred = tp + len(g & p), n_gold + len(g), n_pred + len(p)
    precision, recall, f1 = _f1(tp, n_pred, n_gold)
    return {'precision': precision, 'recall': recall, 'f1': f1}


def tag_report(gold_sequences, pred_sequences):
    """Plain tags (one class per token, e.g. POS): token ``accuracy`` over all words,
    ``macro_f1`` and ``f1[TAG]`` of every tag in the gold or the predicted tags.

    ``gold_sequences[i]`` and ``pred_sequences[i]`` are the tag strings of sentence ``i``, of
    equal lengths; a gold tag no prediction uses (unknown to the model) counts as wrong.
    """
    gold = [t for seq in gold_sequences for t in seq]
    pred = [t for seq in pred_sequences for t in seq]
    if len(gold) != len(pred) or not gold:
        raise ValueError(f'tag_report: {len(gold)} gold and {len(pred)} predicted tags')
    names = sorted(set(gold) | set(pred))
    ids = {t: i for i, t in enumerate(names)}
    return classification_report([ids[t] for t in gold], [ids[t] for t in pred], names)


def normalize_answer(s):
    """The official SQuAD normalisation: lower-case, drop punctuation, articles, extra spaces."""
    s = ''.join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = re.sub(r'\b(a|an|the)\b', ' ', s)
    return ' '.join(s.split())


def squad_f1(prediction, gold):
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    return _f1(same, len(pred_tokens), len(gold_tokens))[2]


def squad_em_f1(predictions, golds):
    """``{'exact_match', 'f1'}`` in percent, each the max over a question's gold answers.

    ``predictions[i]`` is a string, ``golds[i]`` the list of gold answer strings.
    """
    em = sum(max(normalize_answer(p) == normalize_answer(g) for g in gs)
             for p, gs in zip(predictions, golds))
    f1 = sum(max(squad_f1(p, g) for g in gs) for p, gs in zip(predictions, golds))
    n = max(len(golds), 1)
    return {'exact_match': 100.0 * em / n, 'f1': 100.0 * f1 / n}


def correlations(gold, pred):
    """Pearson and Spearman correlation and the mean squared error of regression predictions.

    A constant prediction or constant gold scores have no correlation: reported as None
    (undefined), not 0.
    """
    gold, pred = onp.asarray(gold, dtype=onp.float64), onp.asarray(pred, dtype=onp.float64)
    constant = len(gold) < 2 or onp.ptp(pred) == 0 or onp.ptp(gold) == 0
    return {'pearson': None if constant else float(stats.pearsonr(gold, pred)[0]),
            'spearman': None if constant else float(stats.spearmanr(gold, pred)[0]),
            'mse': float(((gold - pred) ** 2).mean())}


def format_metrics(report):
    """``'name value, ...'`` of a metrics dict, three decimals (None: ``undefined``)."""
    return ', '.join(f'{k} {"undefined" if v is None else f"{v:.3f}"}' for k, v in report.items())


def to_iob2(tags):
    """IOB1 (or IOB2) tags -> IOB2: an ``I-X`` that does not continue an ``X`` entity becomes
    ``B-X``. This is where conlleval starts a chunk, so entities are unchanged."""
    out, prev = [], 'O'
    for tag in tags:
        if tag.startswith('I-') and (prev == 'O' or prev[2:] != tag[2:]):
            tag = 'B-' + tag[2:]
        out.append(tag)
        prev = tag
    return out
