"""The picture of an explanation (:mod:`gluon_bertft.inference.explain`): the words coloured by their
attribution, one strip per target, above the attention map of the chosen layer and head.

Matplotlib's default font (DejaVu Sans) has no CJK glyphs: Chinese words would be drawn as
empty boxes. When the text has such characters, an installed CJK font is added as the fallback
font (:data:`CJK_FONTS`, e.g. Debian's ``fonts-noto-cjk``); without one, a message says once
how to install it (:data:`NO_CJK_FONT`).
"""
import contextlib
import os
import re
import sys
import warnings

import numpy as onp

from ..common.outputs import replace_folder
from ..common.storage import atomic_path, write_json
from .predict import describe_prediction

MAX_LABEL = 18  # characters of a word shown on an axis
MAX_INCHES = 40  # figure side: a 384-token window still fits an image viewer
FILES = ('explanation.json', 'explanation.png')  # what ``explain --out FOLDER`` writes


# fonts with the CJK ideographs, best first: Noto/Source Han (Linux), then those of Windows and macOS
CJK_FONTS = ('Noto Sans CJK SC', 'Noto Sans CJK JP', 'Noto Sans CJK TC', 'Noto Sans CJK KR',
             'Source Han Sans SC', 'Source Han Sans CN', 'Noto Serif CJK SC', 'Noto Serif CJK JP',
             'WenQuanYi Zen Hei', 'WenQuanYi Micro Hei', 'Droid Sans Fallback', 'AR PL UMing CN',
             'Microsoft YaHei', 'SimHei', 'PingFang SC', 'Hiragino Sans GB', 'Heiti SC',
             'Arial Unicode MS')
# their files, found when matplotlib's font cache predates the font's installation
CJK_FILES = re.compile(r'notosanscjk|notoserifcjk|sourcehan|wqy|droidsansfallback|uming|ukai|'
                       r'msyh|simhei|pingfang|arialuni', re.I)
# characters DejaVu Sans lacks: CJK ideographs, radicals, kana, Hangul, full-width forms
WIDE = re.compile('[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef'
                  '\U00020000-\U0002fa1f]')
NO_CJK_FONT = ('explanation.png: no font with CJK glyphs is installed, so those characters are '
               'drawn as empty boxes; install one (Debian/Ubuntu: apt-get install fonts-noto-cjk; '
               'README.md) and run again')
_said = []  # NO_CJK_FONT is said once a process
_found = {}


def cjk_font():
    """The family name of an installed font with CJK glyphs (:data:`CJK_FONTS`), or None; a
    font file installed after matplotlib's font cache was written is added to it."""
    if 'name' not in _found:
        from matplotlib import font_manager
        names = {f.name for f in font_manager.fontManager.ttflist}
        if not names & set(CJK_FONTS):
            for path in font_manager.findSystemFonts():
                if CJK_FILES.search(os.path.basename(path).replace('-', '').replace('_', '')):
                    font_manager.fontManager.addfont(path)
            names = {f.name for f in font_manager.fontManager.ttflist}
        _found['name'] = next((n for n in CJK_FONTS if n in names), None)
    return _found['name']


@contextlib.contextmanager
def font_for(texts):
    """Within: matplotlib's fonts for ``texts``: with CJK characters, the default font falls
    back to :func:`cjk_font`'s, or, with none installed, :data:`NO_CJK_FONT` is printed (once)
    and matplotlib's warning per missing glyph is silenced."""
    import matplotlib
    if not any(WIDE.search(t) for t in texts):
        yield
        return
    font = cjk_font()
    if font is None:
        if not _said:
            print(NO_CJK_FONT, file=sys.stderr)
            _said.append(True)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Glyph .* missing from')
            yield
        return
    # a list of family names (not a generic family) is what matplotlib falls back along, per glyph
    with matplotlib.rc_context({'font.family': [matplotlib.rcParams['font.sans-serif'][0], font]}):
        yield


def _upright(ticks):
    """Labels of one or two CJK characters stand upright (not turned as other words are)."""
    for tick in ticks:
        label = tick.label1 if hasattr(tick, 'label1') else tick
        text = label.get_text()
        if 0 < len(text) <= 2 and all(WIDE.match(ch) for ch in text):
            label.set_rotation(0)


def _short(word):
    return word if len(word) <= MAX_LABEL else word[:MAX_LABEL - 1] + '…'


def plot_explanation(explanation, path, title=None):
    """Write ``explanation`` as a PNG at ``path``, atomically.

    Top: a (targets x words) strip, red for words that raise the target's score and blue for
    words that lower it, each strip scaled to its largest |attribution| (the numbers are in the
    JSON). Bottom: the attention weights (query rows x key columns) of ``attention['layer']``
    and ``attention['head']`` over the tokens. Sizes grow with the number of words.
    """
    e = explanation
    title = title or f'{e["method"]}: prediction {describe_prediction(e["prediction"])}'
    with font_for([title] + e['words'] + e['tokens'] + [t['target'] for t in e['targets']]):
        _plot(e, path, title)


def _plot(e, path, title):
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is
    words, tokens = [_short(w) for w in e['words']], [_short(t) for t in e['tokens']]
    strip = onp.array([t['word_attributions'] for t in e['targets']], dtype=onp.float64)
    scale = onp.maximum(onp.abs(strip).max(axis=1, keepdims=True), 1e-12)
    side = min(max(4.0, 0.22 * len(tokens) + 2), MAX_INCHES)
    strip_height = 0.5 * len(strip) + 1.6
    fig = Figure(figsize=(min(max(side, 0.3 * len(words) + 2), MAX_INCHES), strip_height + side))
    ax_top, ax_att = fig.subplots(2, 1, gridspec_kw=dict(height_ratios=[strip_height, side]))
    image = ax_top.imshow(strip / scale, cmap='RdBu_r', vmin=-1, vmax=1, aspect='auto')
    _upright(ax_top.set_xticks(range(len(words)), words, rotation=90, fontsize=8))
    ax_top.set_yticks(range(len(strip)), [t['target'] for t in e['targets']], fontsize=8)
    for (i, k), value in onp.ndenumerate(strip):
        ax_top.text(k, i, f'{value:.2f}', ha='center', va='center', fontsize=5, rotation=90)
    ax_top.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax_top, label='attribution / max |attribution|', fraction=0.03)
    att = e['attention']
    shown = ax_att.imshow(onp.array(att['weights']), cmap='viridis', vmin=0, aspect='auto')
    _upright(ax_att.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7))
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
