#!/usr/bin/env bash
# The four seed exercises (recipes/exercise-*.yaml) for one training seed, into one compare
# folder, so that the cells they share (baseline, full, lora-r8-all) are trained once and
# reused by fingerprint. Then scripts/exercise_tables.py gathers the cells of every call.
#   scripts/run_exercises.sh SEED OUT [override ...]
# The reduced budget of docs/results.md (100 steps of ~12 verses, 200 test verses, dev on 60):
#   scripts/run_exercises.sh 1 runs/ex-s1 base.train.max_steps=100 base.train.warmup_steps=10 \
#     base.train.eval_every=50 base.train.save_every=50 base.data.max_tokens=512 \
#     base.data.test.limit=200 base.data.max_dev_sentences=60
set -euo pipefail
case ${1:-} in -h|--help) echo "usage: $0 SEED OUT [override ...]"; exit 0 ;; esac
[ $# -ge 2 ] || { echo "usage: $0 SEED OUT [override ...]" >&2; exit 2; }
seed=$1 out=$2
shift 2
mtadapt=${MTADAPT:-mtadapt}
for recipe in lora-vs-full lora-ranks adapter-sizes prefix-prompt-lengths; do
  $mtadapt compare "recipes/exercise-$recipe.yaml" "output_dir=$out" "base.train.seed=$seed" "$@"
done
