#!/usr/bin/env bash
# Issue 6 experiment: low-resource pt->en (2,000 real Bible verse pairs) with back-translation.
# See recipes/augment-bible-bt.yaml. Every step skips what is already done, so a killed run is
# continued by running it again; two `train` lanes can run side by side on two cores.
#
#   scripts/bible_bt_experiment.sh data                     # data + back-translations + mixtures
#   scripts/bible_bt_experiment.sh train bt-real bt-beam    # train and score these systems
#   scripts/bible_bt_experiment.sh all                      # everything, one system after another
#   SEED=1 scripts/bible_bt_experiment.sh train bt-real bt-beam   # another seed: runs/<system>-s1
#   D=data/bible-bt-25k MONO=all BT_DTYPE=int8 UPSAMPLE=4 scripts/bible_bt_experiment.sh data
#   D=data/bible-bt-25k RUNS=runs/bt-scale RECIPE=recipes/augment-bible-bt-scale.yaml \
#     scripts/bible_bt_experiment.sh train bt-real bt-tagged
#                                    # corpus scale (issue 27): every remaining training verse
#                                    # (28,279) as monolingual English, back-translated in int8,
#                                    # real pairs 4x (a fifth of each mixture), LoRA r=16 with
#                                    # early stopping
#   D=data/bible-bt-25k scripts/bible_bt_experiment.sh real-subset 500
#                                    # data/bible-bt-25k-r500: the first 500 real pairs, the same
#                                    # dev, test and back-translations, real pairs repeated to a
#                                    # fifth of the beam mixture; train with D=data/bible-bt-25k-r500
#                                    # (EVAL_EVERY=20 for the real-only run: 20 steps are an epoch)
#
# Systems (all LoRA r=8 all-linear from bergamot:pt-en, same recipe and step budget):
#   bt-base        the untuned student (no training)
#   bt-real        the 2,000 real pairs alone
#   bt-real-noise  the same with source noise on the fly (deletion 0.1, shuffle k=3)
#   bt-beam        2 x real + 4,000 beam (4) back-translations
#   bt-tagged      the same with "[BT] " before each synthetic source (Caswell et al. 2019)
#   bt-sample      2 x real + 4,000 sampled (top-k 10) back-translations
#   bt-noised      2 x real + the beam back-translations noised (deletion 0.1, blank 0.1, k=3)
#   <system>-full  any of these (but bt-base) with full fine-tuning instead of LoRA, lr 1e-4
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MT=${MT:-.venv/bin/mtadapt}
D=${D:-data/bible-bt}
REAL=${REAL:-2000}
MONO=${MONO:-4000}   # or "all": every training verse that is not real
BT_DTYPE=${BT_DTYPE:-float32}
RECIPE=${RECIPE:-recipes/augment-bible-bt.yaml}
UPSAMPLE=${UPSAMPLE:-2}   # copies of the real pairs in each mixture
RUNS=${RUNS:-runs}

data() {
  [ -f $D/mono.en ] || .venv/bin/python scripts/prepare_bible_bt.py --out $D --real $REAL --mono $MONO
  [ -f $D/bt-beam.pt ] || $MT augment backtranslate --no-progress --model bergamot:en-pt --input $D/mono.en \
    --output-src $D/bt-beam.pt --output-tgt $D/bt-beam.en --mode beam --beam 4 --batch-size 32 --seed 0 --dtype $BT_DTYPE --json
  [ -f $D/bt-sample.pt ] || $MT augment backtranslate --no-progress --model bergamot:en-pt --input $D/mono.en \
    --output-src $D/bt-sample.pt --output-tgt $D/bt-sample.en --mode sample --top-k 10 --batch-size 32 --seed 0 --dtype $BT_DTYPE --json
  [ -f $D/bt-tagged.pt ] || { sed 's/^/[BT] /' $D/bt-beam.pt > $D/bt-tagged.pt.tmp && mv $D/bt-tagged.pt.tmp $D/bt-tagged.pt; }
  [ -f $D/bt-noised.pt ] || $MT augment noise --no-progress --input $D/bt-beam.pt --output $D/bt-noised.pt \
    --word-dropout 0.1 --blank-prob 0.1 --blank-token "■" --shuffle-distance 3 --seed 0
  for kind in beam tagged noised; do
    [ -f $D/mix-$kind.pt ] || $MT augment mix --no-progress --real $D/real.pt $D/real.en \
      --synthetic $D/bt-$kind.pt $D/bt-beam.en --output-src $D/mix-$kind.pt --output-tgt $D/mix-$kind.en \
      --real-upsample $UPSAMPLE --seed 0
  done
  # sampled BT has its own targets file (same English lines, same order as bt-beam.en unless
  # a filter dropped a line), so mix it with its own
  $MT augment mix --no-progress --real $D/real.pt $D/real.en --synthetic $D/bt-sample.pt $D/bt-sample.en \
    --output-src $D/mix-sample.pt --output-tgt $D/mix-sample.en --real-upsample $UPSAMPLE --seed 0
}

SEED=${SEED:-0}
SUFFIX=$([ "$SEED" = 0 ] || echo "-s$SEED")

train_one() {
  local name=$1 run=$RUNS/$1$SUFFIX
  # the data of $D (overrides: relative to the working folder)
  local args=("train.seed=$SEED" "data.train.paths=[$D/real.pt, $D/real.en]" "data.dev.paths=[$D/dev.pt, $D/dev.en]"
              "data.test.paths=[$D/test.pt, $D/test.en]")
  # <system>-full: the same data, every weight trained, at the learning rate of
  # recipes/exercise-lora-vs-full.yaml (LoRA's 1e-3 is ten times too high for the whole model);
  # tested against the real-only run of the same method
  local system=${name%-full} real=bt-real
  if [ "$system" != "$name" ]; then
    [ "$system" = bt-base ] && { echo "bt-base-full: the untuned student has no fine-tuning method; use bt-base" >&2; exit 2; }
    args+=("method={name: full}" "train.learning_rate=1.0e-4")
    real=bt-real-full
  fi
  # EVAL_EVERY=N: dev score (and checkpoint) every N steps instead of the recipe's; for a few
  # hundred real pairs, which a LoRA run passes over five times in the recipe's first 100 steps
  if [ -n "${EVAL_EVERY:-}" ]; then args+=("train.eval_every=$EVAL_EVERY" "train.save_every=$EVAL_EVERY"); fi
  case $system in
    bt-base) mkdir -p $run ;;
    bt-real) ;;
    bt-real-noise) args+=("data.noise={word_dropout: 0.1, word_shuffle_distance: 3}") ;;
    bt-beam|bt-tagged|bt-sample|bt-noised|bt-noised20|bt-weak|bt-typo|bt-typo10|bt-typo30)  # from bt-noised20 on: ui_bt_experiment.sh noise-data
      args+=("data.train.paths=[$D/mix-${system#bt-}.pt, $D/mix-${system#bt-}.en]") ;;  # overrides: relative to the working folder
    *) echo "unknown system $name" >&2; exit 2 ;;
  esac
  if [ $name != bt-base ] && [ ! -f $run/final/adapter.json ]; then
    if [ -d $run ]; then resume=--resume; else resume=; fi
    $MT train --no-progress $resume $RECIPE train.output_dir=$run "${args[@]}"
  fi
  if [ ! -f $run/test.json ]; then
    local baseline=()
    [ $name != $real ] && [ -f $RUNS/$real$SUFFIX/test.hyp ] && baseline=(--baseline $RUNS/$real$SUFFIX/test.hyp)
    local model=(--run $run)
    [ $name = bt-base ] && model=(--model bergamot:pt-en)
    $MT evaluate --no-progress "${model[@]}" --src $D/test.pt --ref $D/test.en --save-hyp $run/test.hyp \
      "${baseline[@]}" --json > $run/test.json.tmp
    mv $run/test.json.tmp $run/test.json
  fi
  echo "$name: $(cat $run/test.json)"
}

real_subset() {  # real-subset N: $D-r<N>, the setting with fewer real pairs
  local n=$1 out=$D-r$1
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "real-subset: N must be a positive count of real pairs, got '$n'" >&2; exit 2; }
  local f have bt k
  for f in real.pt real.en bt-beam.pt bt-beam.en; do
    [ -f $D/$f ] || { echo "real-subset: $D/$f: no such file; make the data first ($0 data, with this D)" >&2; exit 2; }
  done
  have=$(wc -l < $D/real.pt)
  [ "$n" -lt "$have" ] || { echo "real-subset $n: $D/real.pt has only $have pairs; N must be smaller" >&2; exit 2; }
  mkdir -p $out
  # real.* are shuffled once (prepare_*.py), so their first N lines are a random subset; dev,
  # test and the back-translations are the same files (links), so only the real data differ
  for f in real.pt real.en; do
    [ -f $out/$f ] || { head -n $n $D/$f > $out/$f.tmp && mv $out/$f.tmp $out/$f; }
  done
  for f in dev.pt dev.en test.pt test.en test-typo.pt bt-beam.pt bt-beam.en bt-sample.pt bt-sample.en bt-tagged.pt; do
    if [ -f $D/$f ] && [ ! -e $out/$f ]; then ln -s "../$(basename $D)/$f" $out/$f; fi
  done
  # real pairs repeated k times so they are at least a fifth of the mixture: k*n >= (k*n + bt) / 5
  bt=$(wc -l < $D/bt-beam.pt)
  k=$(( (bt + 4 * n - 1) / (4 * n) ))
  [ -f $out/mix-beam.pt ] || $MT augment mix --no-progress --real $out/real.pt $out/real.en \
    --synthetic $out/bt-beam.pt $out/bt-beam.en --output-src $out/mix-beam.pt --output-tgt $out/mix-beam.en \
    --real-upsample $k --seed 0
}

case ${1:-all} in
  data) data ;;
  real-subset) real_subset "${2:?usage: $0 real-subset N}" ;;
  train) shift; for s in "$@"; do train_one "$s"; done ;;
  all) data; for s in bt-base bt-real bt-real-noise bt-beam bt-tagged bt-sample bt-noised; do train_one $s; done ;;
  -h|--help) echo "usage: $0 data | real-subset N | train SYSTEM... | all" ;;
  *) echo "usage: $0 data | real-subset N | train SYSTEM... | all" >&2; exit 2 ;;
esac
