"""WordPiece against word-level preprocessing of SNLI pairs, in the same run (issue 15).

The SNLI dev pairs (``../shared/data/snli/snli_1.0_dev.jsonl``, else ``data/snli_sample.jsonl``)
are repeated to ``--pairs`` (550,000 by default, the size of SNLI's training set) and encoded
to BERT inputs (``max_len`` 128) twice, each timed ``--repeats`` times, alternating:

* word level: the book's arrays, ``gluon_bertft.data.snli.encode_pairs`` (lower-case
  whitespace tokens, the package's vectorized path);
* WordPiece: ``gluon_bertft.data.wordpiece.encode_texts`` with all-MiniLM-L6-v2's tokenizer
  (``tokenizers``' batch encoding, then HF's longest-first truncation and packing).

Target: WordPiece at most 2x the word-level time.

    flock /tmp/heavy.lock python benchmarks/bench_preprocess.py

Writes ``benchmarks/results/preprocess_speed.json``.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time

import gluon_bertft  # noqa: F401 (first: thread set-up)
from gluon_bertft import make_task
from gluon_bertft.common.storage import write_json
from gluon_bertft.data.snli import encode_pairs
from gluon_bertft.data.tokenize import build_vocab
from gluon_bertft.data.wordpiece import WordPiece, encode_texts
from gluon_bertft.models import hub

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'snli', 'snli_1.0_dev.jsonl')
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'preprocess_speed.json')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=550_000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    source = DEV if os.path.exists(DEV) else os.path.join(ROOT, 'data', 'snli_sample.jsonl')
    task = make_task('snli')
    rows = task.read(source)
    rows = (rows * (args.pairs // len(rows) + 1))[:args.pairs]
    premises, hypotheses = [r[0] for r in rows], [r[1] for r in rows]
    vocab = build_vocab(task.vocab_text(rows[:10000]))
    wp = WordPiece.from_folder(hub.minilm_path())
    paths = {'word level': lambda: encode_pairs(premises, hypotheses, vocab, 128),
             'WordPiece': lambda: encode_texts(wp, list(zip(premises, hypotheses)), 128)}
    seconds = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(round(time.perf_counter() - start, 3))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    ratio = medians['WordPiece'] / medians['word level']
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = dict(date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                  command=' '.join(['python', 'benchmarks/bench_preprocess.py'] + sys.argv[1:]),
                  commit=git('rev-parse', '--short', 'HEAD'), source=source, pairs=args.pairs,
                  loadavg=os.getloadavg(), seconds=seconds, median_seconds=medians,
                  wordpiece_over_word_level=round(ratio, 3))
    for name, s in seconds.items():
        print(f'{name:>10}: {medians[name]:.2f} s (repeats {s})')
    print(f'WordPiece / word level: {ratio:.2f} (target <= 2)')
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out, result)  # atomic


if __name__ == '__main__':
    main()
