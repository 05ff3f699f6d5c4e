"""The picture of an explanation (:mod:`gluon_bertft.inference.explain`): the words coloured by their
attribution, one strip per target, above the attention map of the chosen layer and head."""
import os

import numpy as onp

from ..common.outputs import replace_folder
from ..common.storage import atomic_path, write_json
from .explain import describe_prediction

MAX_LABEL = 18  # characters of a word shown on an axis
MAX_INCHES = 40  # figure side: a 384-token window still fits an image viewer
FILES = ('explanation.json', 'explanation.png')  # what ``explain --out FOLDER`` writes


def _short(word):
    return word if len(word) <= MAX_LABEL else word[:MAX_LABEL - 1] + '…'


def plot_explanation(explanation, path, title=None):
    """Write ``explanation`` as a PNG at ``path``, atomically.

    Top: a (targets x words) strip, red for words that raise the target's score and blue for
    words that lower it, each strip scaled to its largest |attribution| (the numbers are in the
    JSON). Bottom: the attention weights (query rows x key columns) of ``attention['layer']``
    and ``attention['head']`` over the tokens. Sizes grow with the number of words.
    """
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is
    e = explanation
    words, tokens = [_short(w) for w in e['words']], [_short(t) for t in e['tokens']]
    strip = onp.array([t['word_attributions'] for t in e['targets']], dtype=onp.float64)
    scale = onp.maximum(onp.abs(strip).max(axis=1, keepdims=True), 1e-12)
    side = min(max(4.0, 0.22 * len(tokens) + 2), MAX_INCHES)
    strip_height = 0.5 * len(strip) + 1.6
    fig = Figure(figsize=(min(max(side, 0.3 * len(words) + 2), MAX_INCHES), strip_height + side))
    ax_top, ax_att = fig.subplots(2, 1, gridspec_kw=dict(height_ratios=[strip_height, side]))
    image = ax_top.imshow(strip / scale, cmap='RdBu_r', vmin=-1, vmax=1, aspect='auto')
    ax_top.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    ax_top.set_yticks(range(len(strip)), [t['target'] for t in e['targets']], fontsize=8)
    for (i, k), value in onp.ndenumerate(strip):
        ax_top.text(k, i, f'{value:.2f}', ha='center', va='center', fontsize=5, rotation=90)
    ax_top.set_title(title or f'{e["method"]}: prediction {describe_prediction(e["prediction"])}',
                     fontsize=9)
    fig.colorbar(image, ax=ax_top, label='attribution / max |attribution|', fraction=0.03)
    att = e['attention']
    shown = ax_att.imshow(onp.array(att['weights']), cmap='viridis', vmin=0, aspect='auto')
    ax_att.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax_att.set_yticks(range(len(tokens)), tokens, fontsize=7)
    head = 'mean over heads' if att['head'] == 'mean' else f'head {att["head"]}'
    ax_att.set_title(f'attention, layer {att["layer"]}, {head} (row: query, column: key)',
                     fontsize=9)
    fig.colorbar(shown, ax=ax_att, fraction=0.03)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110)


def save_explanation(explanation, folder):
    """Write ``explanation`` into ``folder`` as ``explanation.json`` and ``explanation.png``
    (:data:`FILES`): the folder is created, or replaced as a whole with both files at once
    (:func:`~gluon_bertft.common.outputs.replace_folder`). Returns the two paths."""
    with replace_folder(folder) as tmp:
        write_json(os.path.join(tmp, FILES[0]), explanation)
        plot_explanation(explanation, os.path.join(tmp, FILES[1]))
    return [os.path.join(folder, name) for name in FILES]
