#!/usr/bin/env bash
# Issue 27, item 2: back-translation for software-UI strings (pt_BR -> en), the setting most
# users of adaptation have: their product's strings, few translated, many untranslated. See
# recipes/augment-ui-bt.yaml and scripts/prepare_ui_strings.py. Every step skips what is done.
#
#   scripts/ui_bt_experiment.sh data                          # wheels -> catalogs -> data/ui-pt-en,
#                                                             # beam back-translation (int8), mixture
#   scripts/ui_bt_experiment.sh train bt-base bt-real bt-beam # score the untuned student, train + score
#   SEED=1 scripts/ui_bt_experiment.sh train bt-real bt-beam  # another seed: runs/bt-ui/<system>-s1
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

case ${1:-} in
  data) data ;;
  train) shift; bash scripts/bible_bt_experiment.sh train "$@" ;;
  -h|--help) echo "usage: $0 data | train SYSTEM..." ;;
  *) echo "usage: $0 data | train SYSTEM..." >&2; exit 2 ;;
esac
