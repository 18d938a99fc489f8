#!/usr/bin/env bash
# Issue 27, item 2: back-translation for software-UI strings (pt_BR -> en), the setting most
# users of adaptation have: their product's strings, few translated, many untranslated. See
# recipes/augment-ui-bt.yaml and scripts/prepare_ui_strings.py. Every step skips what is done.
#
#   scripts/ui_bt_experiment.sh data                          # wheels -> catalogs -> data/ui-pt-en,
#                                                             # beam back-translation (int8), mixture
#   scripts/ui_bt_experiment.sh train bt-base bt-real bt-beam # score the untuned student, train + score
#   SEED=1 scripts/ui_bt_experiment.sh train bt-real bt-beam  # another seed: runs/bt-ui/<system>-s1
#   scripts/ui_bt_experiment.sh systems-data                  # the other systems of item 1: sampled
#   scripts/ui_bt_experiment.sh train bt-tagged bt-sample     # (top-10) BT and tagged beam BT ("[BT] ")
#
# Fewer real strings, and full fine-tuning (issue 27, item 1's other settings, here):
#   scripts/ui_bt_experiment.sh real-subset 500               # data/ui-pt-en-r500: the first 500 real
#   D=data/ui-pt-en-r500 RUNS=runs/bt-ui-r500 scripts/ui_bt_experiment.sh train bt-real bt-beam
#   scripts/ui_bt_experiment.sh train bt-real-full bt-beam-full   # every weight trained, lr 1e-4
#
# What noise is good for (issue 27, item 4):
#   scripts/ui_bt_experiment.sh noise-data                    # noisy copies and their mixtures
#   scripts/ui_bt_experiment.sh train bt-noised20 bt-weak bt-typo bt-typo10 bt-typo30
#   scripts/ui_bt_experiment.sh typo-test bt-base bt-real bt-beam bt-noised20 bt-weak bt-typo bt-typo10 bt-typo30
#     test-typo.pt: every test source with typos and casing noise (scripts/typo_noise.py), the
#     robustness test of mozilla/translations; each system scored there too (test-typo.json).
#     bt-noised20: the beam BT sources, a fifth of them noised (deletion 0.1, shuffle k=3);
#     bt-weak: all of them, weaker (deletion 0.05, shuffle k=2); bt-typo: a fifth of them with
#     typos and casing noise (robustness training), bt-typo10 / bt-typo30 a tenth / three
#     tenths. Mixed with 3 x the real pairs, as bt-beam.
#
# Systems: bt-base (untuned bergamot:pt-en), bt-real (the 1,000 real strings alone), bt-beam
# (3 x real + 11,705 beam-4 back-translations). Training and scoring are those of
# scripts/bible_bt_experiment.sh (its `train` step, pointed at this data).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MT=${MT:-.venv/bin/mtadapt}
PY=${PY:-.venv/bin/python}
WHEELS=${WHEELS:-data/ui-wheels}
REAL=${REAL:-1000}
UPSAMPLE=${UPSAMPLE:-3}   # 3 x 1,000 real of 14,705: at least a fifth
BT_DTYPE=${BT_DTYPE:-int8}
export D=${D:-data/ui-pt-en} RUNS=${RUNS:-runs/bt-ui} RECIPE=${RECIPE:-recipes/augment-ui-bt.yaml} MT

data() {
  if ! ls $WHEELS/*.whl >/dev/null 2>&1; then
    mkdir -p $WHEELS
    $PY -m pip download --no-deps -q -d $WHEELS django django-cms pretix sphinx wagtail weblate \
      django-oscar django-allauth django-filer
  fi
  [ -f $D/mono.en ] || $PY scripts/prepare_ui_strings.py --wheels $WHEELS --out-dir $D --real $REAL
  [ -f $D/bt-beam.pt ] || $MT augment backtranslate --no-progress --model bergamot:en-pt --input $D/mono.en \
    --output-src $D/bt-beam.pt --output-tgt $D/bt-beam.en --mode beam --beam 4 --batch-size 32 --seed 0 --dtype $BT_DTYPE --json
  [ -f $D/mix-beam.pt ] || $MT augment mix --no-progress --real $D/real.pt $D/real.en \
    --synthetic $D/bt-beam.pt $D/bt-beam.en --output-src $D/mix-beam.pt --output-tgt $D/mix-beam.en \
    --real-upsample $UPSAMPLE --seed 0
}

systems_data() {  # sampled back-translations (top-k 10) and tagged beam ones, and their mixtures
  [ -f $D/bt-sample.pt ] || $MT augment backtranslate --no-progress --model bergamot:en-pt --input $D/mono.en \
    --output-src $D/bt-sample.pt --output-tgt $D/bt-sample.en --mode sample --top-k 10 --batch-size 32 --seed 0 --dtype $BT_DTYPE --json
  [ -f $D/bt-tagged.pt ] || { sed 's/^/[BT] /' $D/bt-beam.pt > $D/bt-tagged.pt.tmp && mv $D/bt-tagged.pt.tmp $D/bt-tagged.pt; }
  [ -f $D/mix-tagged.pt ] || $MT augment mix --no-progress --real $D/real.pt $D/real.en \
    --synthetic $D/bt-tagged.pt $D/bt-beam.en --output-src $D/mix-tagged.pt --output-tgt $D/mix-tagged.en \
    --real-upsample $UPSAMPLE --seed 0
  # the sampled pairs have their own English file: the filters may keep other lines than beam's
  [ -f $D/mix-sample.pt ] || $MT augment mix --no-progress --real $D/real.pt $D/real.en \
    --synthetic $D/bt-sample.pt $D/bt-sample.en --output-src $D/mix-sample.pt --output-tgt $D/mix-sample.en \
    --real-upsample $UPSAMPLE --seed 0
}
noise_data() {
  [ -f $D/test-typo.pt ] || $PY scripts/typo_noise.py --input $D/test.pt --output $D/test-typo.pt --seed 0
  [ -f $D/bt-noised20.pt ] || $MT augment noise --no-progress --input $D/bt-beam.pt --output $D/bt-noised20.pt \
    --word-dropout 0.1 --shuffle-distance 3 --fraction 0.2 --seed 0
  [ -f $D/bt-weak.pt ] || $MT augment noise --no-progress --input $D/bt-beam.pt --output $D/bt-weak.pt \
    --word-dropout 0.05 --shuffle-distance 2 --seed 0
  [ -f $D/bt-typo.pt ] || $PY scripts/typo_noise.py --input $D/bt-beam.pt --output $D/bt-typo.pt --fraction 0.2 --seed 1
  # a tenth and three tenths: the same seed draws each line's chance first, so the lines noised
  # at 0.1 are among those noised at 0.2, and those among 0.3's
  for f in 10 30; do
    [ -f $D/bt-typo$f.pt ] || $PY scripts/typo_noise.py --input $D/bt-beam.pt --output $D/bt-typo$f.pt --fraction 0.$((f / 10)) --seed 1
  done
  for kind in noised20 weak typo typo10 typo30; do
    [ -f $D/mix-$kind.pt ] || $MT augment mix --no-progress --real $D/real.pt $D/real.en \
      --synthetic $D/bt-$kind.pt $D/bt-beam.en --output-src $D/mix-$kind.pt --output-tgt $D/mix-$kind.en \
      --real-upsample $UPSAMPLE --seed 0
  done
}

typo_test() {  # typo_test SYSTEM...: each trained (or untuned) system on the typo-noised test sources
  local suffix=$([ "${SEED:-0}" = 0 ] || echo "-s$SEED")
  for name in "$@"; do
    local run=$RUNS/$name$suffix model=(--run $RUNS/$name$suffix) baseline=()
    [ $name = bt-base ] && model=(--model bergamot:pt-en) && mkdir -p $run
    [ -d $run ] || { echo "typo-test: $run: no such run; train it first ($0 train $name)" >&2; exit 2; }
    [ $name != bt-real ] && [ -f $RUNS/bt-real$suffix/test-typo.hyp ] && baseline=(--baseline $RUNS/bt-real$suffix/test-typo.hyp)
    [ -f $run/test-typo.json ] && continue
    $MT evaluate --no-progress "${model[@]}" --src $D/test-typo.pt --ref $D/test.en --save-hyp $run/test-typo.hyp \
      "${baseline[@]}" --json > $run/test-typo.json.tmp
    mv $run/test-typo.json.tmp $run/test-typo.json
    echo "$name (typo test): $(cat $run/test-typo.json)"
  done
}

case ${1:-} in
  data) data ;;
  systems-data) systems_data ;;
  noise-data) noise_data ;;
  typo-test) shift; typo_test "$@" ;;
  train|real-subset) bash scripts/bible_bt_experiment.sh "$@" ;;
  -h|--help) echo "usage: $0 data | systems-data | noise-data | real-subset N | train SYSTEM... | typo-test SYSTEM..." ;;
  *) echo "usage: $0 data | systems-data | noise-data | real-subset N | train SYSTEM... | typo-test SYSTEM..." >&2; exit 2 ;;
esac
