"""Explain a saved model's predictions, for every task: token attributions and attention maps.

The source's stated limitation of fine-tuned BERT is that it is a black box. An explanation
(:func:`explain_rows`, :func:`explain`; ``python -m gluon_bertft explain``) is a JSON-able dict:

``input``, ``tokens``, ``words``, ``word_tokens``
    the raw input; the model's tokens (up to the valid length); the words (WordPiece ``##``
    pieces and a tagged word's pieces joined) and, per word, the positions of its tokens.
``prediction``
    what ``predict --data`` writes for the input (label and probabilities, score, tags, answer).
``method``, ``steps``
    ``'integrated gradients'`` with ``steps`` Gauss-Legendre nodes, or ``'gradient x input'``
    (``steps`` 1): :mod:`gluon_bertft.inference.attribution`.
``targets``
    one entry per explained score: ``target`` (what is explained), ``position``, ``score`` F(x),
    ``baseline_score`` F(x'), ``attributions`` per token, ``word_attributions`` per word, and
    ``completeness``: ``sum`` of the attributions, ``delta`` = F(x) - F(x'), ``gap``,
    ``tolerance`` = max(2% of |delta|, 0.01) and ``within`` (None for gradient x input, which
    promises no completeness).
``attention``
    ``layer``, ``head`` (a number or ``'mean'``) and ``weights`` (tokens x tokens: row = query).

Targets per task: classifiers (``snli``, ``classify``, ``pair-classify``) the logit of the
predicted class (or of ``label``, a display name or a stored label); ``regress`` the score;
``tag`` the logit of a word's predicted tag at its first piece, for ``word`` or else, for IOB
tags (entities, chunks), the first word of every predicted span (word 0 if there is none) and,
for plain tags (POS), every word within ``max_len``: each word has a tag of its own, none
stands out; ``qa`` the start and the end scores of the predicted answer, in the window that
holds it.
"""
import dataclasses

import numpy as onp

from ..common.errors import ConfigError
from ..data.batching import make_iter
from ..models.build import check_segments
from ..tasks import RAW_INPUTS, TASKS
from ..tasks.base import is_wordpiece
from ..training.evaluate import predict_outputs
from .predict import describe_prediction
from .attribution import (MAX_TOKENS, METHODS, attention_weights, attribute, baseline_tokens,
                          device_of, score_index)

MAX_STEPS = 1024  # Gauss-Legendre nodes: 32 reach a gap of ~1e-3 of delta; the nodes cost O(steps^2)


def special_ids(vocab):
    """``[cls, sep, pad]`` ids of a vocabulary: the tokens the baseline keeps (pad last)."""
    if is_wordpiece(vocab):
        return [vocab.cls_id, vocab.sep_id, vocab.pad_id]
    idx = vocab.token_to_idx
    return [idx['<cls>'], idx['<sep>'], idx['<pad>']]


def check_view(net, layer, head):
    """``(layer, head)`` checked against the encoder; ``layer`` None is the last block, ``head``
    ``'mean'`` the mean over heads. Raises ``ConfigError`` naming the option."""
    num_blks, num_heads = len(net.encoder.blks), net.encoder.blks[0].attention.num_heads
    layer = num_blks - 1 if layer is None else layer
    if not (isinstance(layer, int) and 0 <= layer < num_blks):
        raise ConfigError(f'--layer {layer}: the model has {num_blks} layers (0 to {num_blks - 1})')
    if head != 'mean' and not (isinstance(head, int) and 0 <= head < num_heads):
        raise ConfigError(f'--head {head}: the model has {num_heads} heads (0 to '
                          f'{num_heads - 1}), or give mean')
    return layer, head


def find_targets(task, rows, dataset, outputs, label=None, word=None):
    """Per row, ``(example, [Target])``: the row's encoded example (its answer's window for QA)
    and what to explain in it (module docstring; the task's ``explain_targets``). Raises
    ``ConfigError`` for a ``label`` or ``word`` that does not apply or does not exist."""
    for option, value in (('label', label), ('word', word)):
        if value is not None and option not in task.EXPLAIN_OPTIONS:
            takers = ', '.join(n for n, cls in TASKS.items() if option in cls.EXPLAIN_OPTIONS)
            raise ConfigError(f'--{option}: applies to {takers}, not to {task.name}')
    return task.explain_targets(rows, dataset, outputs, label, word)


def group_words(tokens, wordpiece, specials, word_starts=None, words=None):
    """``[(text, [positions])]``: the words of an example's ``tokens`` (strings). Specials are
    words of their own; with ``word_starts`` (tagging) word ``j`` runs from its first piece to
    the next word's, and its text is ``words[j]``; else WordPiece ``##`` pieces join the word
    before them, and a book-vocabulary token is a word."""
    groups = []
    if word_starts is not None:
        bounds = list(word_starts) + [len(tokens) - 1]  # the final <sep>
        groups = [(words[j], list(range(int(a), int(b)))) for j, (a, b) in
                  enumerate(zip(bounds[:-1], bounds[1:]))]
        return [(tokens[0], [0])] + groups + [(tokens[-1], [len(tokens) - 1])]
    for p, tok in enumerate(tokens):
        if (wordpiece and tok.startswith('##') and groups and groups[-1][0] not in specials):
            groups[-1] = (groups[-1][0] + tok[2:], groups[-1][1] + [p])
        else:
            groups.append((tok, [p]))
    return groups


@dataclasses.dataclass
class ExplainOptions:
    """What :func:`explain_rows` computes: ``method`` ``'ig'`` or ``'gradxinput'``; ``steps``
    integration nodes (ig); ``label`` the class to explain, by display or stored name
    (classifiers; default the prediction); ``word`` the word to explain (tag, 0-based);
    ``layer`` (0-based, default the last) and ``head`` (``'mean'`` or 0-based) of the attention
    map kept; ``max_tokens`` positions per forward/backward batch."""
    method: str = 'ig'
    steps: int = 32
    label: object = None
    word: object = None
    layer: object = None
    head: object = 'mean'
    max_tokens: int = MAX_TOKENS

    def check(self, net):
        if self.method not in METHODS:
            raise ConfigError(f'--method {self.method}: choose from {", ".join(METHODS)}')
        if not (isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS):
            raise ConfigError(f'--steps {self.steps}: give a whole number from 1 to {MAX_STEPS}')
        self.layer, self.head = check_view(net, self.layer, self.head)


def explain_rows(net, vocab, task, rows, **options):
    """One explanation (a dict, module docstring) per row of ``task``'s rows (``task.read`` or
    ``task.raw_rows``), computed together: the interpolation points of all rows' targets share
    forward/backward batches of at most ``max_tokens`` positions.

    ``net``, ``vocab``, ``task``: :func:`~gluon_bertft.inference.predict.load_model` (or
    ``finetune``'s); ``options``: the fields of :class:`ExplainOptions`. Raises
    ``ConfigError`` or ``DataError`` naming the bad option or input.
    """
    o = ExplainOptions(**options)
    o.check(net)
    dataset = task.encode(rows, vocab, log=lambda *_: None)
    check_segments(dataset, net, 'the model')
    outputs = predict_outputs(net, make_iter(dataset, 64, False, sort=True), [device_of(net)])
    records = task.records(outputs, rows, dataset)
    per_row = find_targets(task, rows, dataset, outputs, o.label, o.word)
    examples = [example for example, _ in per_row]
    inputs = (dataset.all_token_ids[examples], dataset.all_segments[examples],
              dataset.valid_lens[examples])
    width = int(inputs[2].max())
    flat = [(k, score_index(net, width, t.position, t.cls))
            for k, (_, targets) in enumerate(per_row) for t in targets]
    keep = special_ids(vocab)
    found = attribute(net, inputs, baseline_tokens(inputs[0], keep), flat, o.method, o.steps,
                      o.max_tokens)
    specials, results, j = set(vocab.to_tokens(keep[:2])), [], 0
    for k, (row, record, (example, targets)) in enumerate(zip(rows, records, per_row)):
        n = int(inputs[2][k])
        strings = vocab.to_tokens(inputs[0][k, :n].tolist())
        starts = task.word_starts(dataset, example)
        words = group_words(strings, is_wordpiece(vocab), specials, starts,
                            row.words if starts is not None else None)
        entries = [_entry(t, found, j + i, n, words, o.method == 'ig') for i, t in enumerate(targets)]
        j += len(targets)
        results.append(dict(
            input=task.explain_input(row), tokens=strings, words=[w for w, _ in words],
            word_tokens=[p for _, p in words], prediction=record, method=METHODS[o.method],
            steps=o.steps if o.method == 'ig' else 1, targets=entries,
            attention=_attention(net, [a[k:k + 1, :n] for a in inputs[:2]] + [inputs[2][k:k + 1]], o)))
    return results


def _attention(net, inputs, o):
    """The attention map of one example kept in its explanation: ``o.layer``, ``o.head``."""
    weights = attention_weights(net, *inputs)
    view = weights[o.layer, 0].mean(axis=0) if o.head == 'mean' else weights[o.layer, 0, o.head]
    return dict(layer=o.layer, head=o.head, weights=_round(view, 4))


def _entry(target, found, j, n, words, complete):
    attributions = found['attributions'][j, :n]
    score, base = float(found['score'][j]), float(found['baseline_score'][j])
    total, delta = float(attributions.sum()), score - base
    tolerance = max(0.02 * abs(delta), 0.01)
    return dict(
        target=target.name, position=target.position, score=round(score, 6),
        baseline_score=round(base, 6), attributions=_round(attributions, 6),
        word_attributions=[round(float(attributions[p].sum()), 6) for _, p in words],
        completeness=dict(sum=round(total, 6), delta=round(delta, 6), gap=round(total - delta, 6),
                          tolerance=round(tolerance, 6),
                          within=bool(abs(total - delta) <= tolerance) if complete else None))


def _round(a, digits):
    return onp.round(onp.asarray(a, dtype=onp.float64), digits).tolist()


def explain(net, vocab, task, **kwargs):
    """The explanation of one raw input (``premise``/``hypothesis``, ``text``/``text_b``,
    ``question``/``passage``: as :func:`~gluon_bertft.inference.predict.predict`; an input the
    task does not take is a ``ConfigError``); ``max_unknown`` and ``log`` check the
    vocabulary's coverage of the input as ``predict`` does; the other ``kwargs`` are
    :class:`ExplainOptions` (:func:`explain_rows`)."""
    inputs = {k: kwargs.pop(k) for k in list(kwargs) if k in RAW_INPUTS}
    max_unknown, log = kwargs.pop('max_unknown', None), kwargs.pop('log', print)
    rows = task.raw_rows(task.raw_inputs(inputs))
    task.check_coverage(rows, vocab, 'the input', "the model's vocabulary", max_unknown, log)
    return explain_rows(net, vocab, task, rows, **kwargs)[0]


def render(explanation, color=False, width=100):
    """The explanation as terminal text: the prediction, then per target the completeness check
    and every word with its attribution (``color``: ANSI red for positive, blue for negative)."""
    e = explanation
    lines = [f'prediction: {describe_prediction(e["prediction"])}', f'method: {e["method"]}'
             + (f', {e["steps"]} steps' if e['method'] == METHODS['ig'] else '')]
    for t in e['targets']:
        c = t['completeness']
        check = ('no completeness guarantee' if c['within'] is None else
                 f'{"within" if c["within"] else "OUTSIDE"} ±{c["tolerance"]:.4f}')
        lines.append(f'target {t["target"]}: score {t["score"]:.4f}, baseline {t["baseline_score"]:.4f}; '
                     f'attributions sum to {c["sum"]:.4f} against {c["delta"]:.4f} '
                     f'(gap {c["gap"]:+.4f}, {check})')
        top = max([abs(a) for a in t['word_attributions']] + [1e-12])
        line = ' '
        for word, a in zip(e['words'], t['word_attributions']):
            piece = f'{word}({a:+.3f})'
            shown = _ansi(piece, a / top) if color else piece
            if len(line) + len(piece) + 1 > width:
                lines.append(line)
                line = ' '
            line += ' ' + shown
        lines.append(line)
    return '\n'.join(lines)


def _ansi(text, strength):
    """``text`` on a red (positive) or blue (negative) background, of 5 shades by |strength|."""
    shade = min(4, int(abs(strength) * 5))
    if shade == 0:
        return text
    reds, blues = (224, 217, 210, 203, 196), (189, 153, 111, 75, 33)
    return f'\033[48;5;{(reds if strength > 0 else blues)[shade]}m{text}\033[0m'
