#!/bin/sh
# POS (column 1) and chunking (column 2) on CoNLL-2003 eng.train -> eng.testa, MiniLM and
# random initialization (the same 6x384 network), seeds 0 and 1: docs/tasks.md, "POS tagging
# and chunking". Run from the repository root: sh experiments/pos_chunk_conll.sh OUTDIR
# Each run writes OUTDIR/NAME/result.json and OUTDIR/NAME.log; OUTDIR/runs.tsv gets one line
# per run: name, commit, wall seconds, load average at the start and at the end.
set -e
OUT=${1:-runs/pos_chunk}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/conll2003}
BUDGET=${BUDGET:---max-examples 4000 --max-test-examples 1000 --epochs 1}
mkdir -p "$OUT"
for task in pos:1 chunk:2; do
  for init in minilm random; do
    for seed in 0 1; do
      name=${task%:*}_${init}_s$seed
      if [ "$init" = minilm ]; then model="--pretrained minilm --lr 1e-4"
      else model="--pretrained random --preset minilm --lr 3e-4"; fi
      start=$(date +%s); load0=$(cut -d' ' -f1 /proc/loadavg)
      nice -n 10 $PY -m gluon_bertft finetune --task tag --tag-column ${task#*:} \
          --train $DATA/eng.train --test $DATA/eng.testa $BUDGET --max-len 192 \
          --batch-size 32 --devices cpu --warmup 0.1 --weight-decay 0.01 --clip-grad 1.0 \
          --seed $seed $model --out "$OUT/$name" > "$OUT/$name.log" 2>&1
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$(git rev-parse --short HEAD)" \
          $(( $(date +%s) - start )) "$load0" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/runs.tsv"
      rm -rf "$OUT/$name/model" "$OUT/$name/checkpoint"  # keep result.json and the curve
    done
  done
done
