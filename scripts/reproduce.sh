#!/usr/bin/env bash
# Rerun every experiment of the paper: train, evaluate and report each preset for each seed, then
# write the aggregated tables (mean ± std over seeds) to DIR/results.md and DIR/results.json.
# Run `scripts/reproduce.sh --help` for the options.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/reproduce.sh [--budget cpu|gpu] [--seeds N] [--only PATTERN] [--out DIR]
                            [--data-dir DIR] [--extra "ARGS"] [--eval-extra "ARGS"] [--dry-run]

Rerun the experiments of the paper, one run directory per preset and seed
(DIR/runs/PRESET/seed-S), then aggregate them:

  Table 1 (MNIST):    vae-mnist tvae-L0-mnist bubbles-mnist tvae-Lshort-mnist tvae-Lhalf-mnist
  Table 2 (dSprites): vae-dsprites tvae-L0-dsprites bubbles-dsprites tvae-Lshort-dsprites
                      tvae-Lthird-dsprites tvae-Lhalf-dsprites
  2-D map:            tvae-2d-mnist
  figures' model:     tvae-Lpartial-mnist, -generalization, -rotcolor, -perspective
  baselines:          beta-vae-dsprites beta-tcvae-dsprites factor-vae-dsprites

For each run: topovae train, topovae evaluate (dSprites runs add
--metrics mig,sap,dci,factor_vae,beta_vae), topovae report. Runs already evaluated are skipped,
so an interrupted reproduction resumes where it stopped: a run with a model is only evaluated, a
run with a checkpoint but no model continues with `topovae train --resume`, and a run directory
holding neither (killed before its first checkpoint) is removed and trained again. Finally every
evaluated run under DIR/runs is aggregated by preset into DIR/results.md (tables, commands,
machine, wall time, data, Table 1 ordering check) and DIR/results.json
(`topovae compare --by preset --format json`).

Options:
  --budget cpu|gpu   cpu (default): the -cpu presets (about 30 min each on a 2-core CPU);
                     gpu: the full-protocol presets, trained with --accelerator gpu
  --seeds N          seeds 0 .. N-1 of every experiment (default 3)
  --only PATTERN     only the experiments whose name (with or without -cpu) matches this
                     extended regular expression, e.g. '^vae-mnist$' or 'mnist'
  --out DIR          output folder (default runs/reproduce)
  --data-dir DIR     folder with the data files (else $TOPOVAE_DATA or the user cache)
  --extra "ARGS"     more arguments of every `topovae train` of a new run, e.g.
                     --extra "--max-steps 5 evaluate.n_eval_sequences=16"
  --eval-extra "ARGS" more arguments of every `topovae evaluate`, e.g. "--n-is-samples 100"
  --dry-run          print the commands without running anything
  -h, --help         this help

Environment: TOPOVAE (the command to run, default `topovae`, else the repository's
.venv/bin/topovae), PYTHON (the interpreter of the results page, default the one beside it).
Each run's output goes to DIR/logs/PRESET-seed-S.log and its commands to RUN/commands.txt.
EOF
}

die() { echo "reproduce.sh: error: $*" >&2; exit 2; }

budget=cpu
seeds=3
only=""
out=runs/reproduce
data_dir=""
extra=""
eval_extra=""
dry_run=0

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --budget) need_value "$@"; budget="$2"; shift 2 ;;
    --budget=*) budget="${1#*=}"; shift ;;
    --seeds) need_value "$@"; seeds="$2"; shift 2 ;;
    --seeds=*) seeds="${1#*=}"; shift ;;
    --only) need_value "$@"; only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --out) need_value "$@"; out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --data-dir) need_value "$@"; data_dir="$2"; shift 2 ;;
    --data-dir=*) data_dir="${1#*=}"; shift ;;
    --extra) [[ $# -ge 2 ]] || die "--extra needs a value"; extra="$2"; shift 2 ;;
    --extra=*) extra="${1#*=}"; shift ;;
    --eval-extra) [[ $# -ge 2 ]] || die "--eval-extra needs a value"; eval_extra="$2"; shift 2 ;;
    --eval-extra=*) eval_extra="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ "$budget" == cpu || "$budget" == gpu ]] || die "--budget must be cpu or gpu, got '$budget'"
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || die "--seeds must be a positive integer, got '$seeds'"
if [[ -n "$only" ]]; then
  # an invalid regular expression makes [[ =~ ]] return 2: say so instead of matching nothing
  set +e; [[ "probe" =~ $only ]]; status=$?; set -e
  [[ $status -le 1 ]] || die "--only '$only' is not a valid extended regular expression"
fi
if [[ -n "$data_dir" && ! -d "$data_dir" && $dry_run -eq 0 ]]; then
  die "--data-dir $data_dir is not a directory"
fi
read -r -a extra_args <<<"$extra"
read -r -a eval_extra_args <<<"$eval_extra"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${TOPOVAE:-}" ]]; then
  read -r -a topovae <<<"$TOPOVAE"
elif command -v topovae >/dev/null 2>&1; then
  topovae=(topovae)
elif [[ -x "$repo_root/.venv/bin/topovae" ]]; then
  topovae=("$repo_root/.venv/bin/topovae")
else
  topovae=(python3 -m topovae.cli.main)
fi
if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
else
  topovae_path="$(command -v "${topovae[0]}" 2>/dev/null || true)"
  if [[ -n "$topovae_path" && -x "$(dirname "$topovae_path")/python" ]]; then
    python="$(dirname "$topovae_path")/python"
  else
    python=python3
  fi
fi

# the paper's experiments (full-protocol preset names); the dSprites ones are also scored with
# the disentanglement metrics
experiments=(
  vae-mnist tvae-L0-mnist bubbles-mnist tvae-Lshort-mnist tvae-Lhalf-mnist
  vae-dsprites tvae-L0-dsprites bubbles-dsprites tvae-Lshort-dsprites tvae-Lthird-dsprites
  tvae-Lhalf-dsprites
  tvae-2d-mnist
  tvae-Lpartial-mnist tvae-Lpartial-mnist-generalization tvae-Lpartial-mnist-rotcolor
  tvae-Lpartial-mnist-perspective
  beta-vae-dsprites beta-tcvae-dsprites factor-vae-dsprites
)
disentanglement_metrics=mig,sap,dci,factor_vae,beta_vae

preset_of() { if [[ "$budget" == cpu ]]; then echo "$1-cpu"; else echo "$1"; fi; }

selected() {  # selected BASE PRESET: does --only match?
  [[ -z "$only" ]] && return 0
  [[ "$1" =~ $only || "$2" =~ $only ]]
}

# quote ARGS...: the arguments as a shell would need them typed (plain words left as they are)
quote() {
  local text="" arg q
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./,=:@%+-]+$ ]]; then
      text+="$arg "
    else
      printf -v q '%q' "$arg"
      text+="$q "
    fi
  done
  echo "${text% }"
}

# run LOG CMD...: print the command, and unless --dry-run run it with its output added to LOG
run() {
  local log="$1"; shift
  echo "+ $(quote "$@")"
  if [[ $dry_run -eq 1 ]]; then return 0; fi
  mkdir -p "$(dirname "$log")"
  echo "+ $(quote "$@")" >>"$log"
  "$@" 2>&1 | tee -a "$log"
}

# record RUN CMD...: add the command (as typed by a user: `topovae ...`) to RUN/commands.txt
record() {
  local run_dir="$1"; shift
  if [[ $dry_run -eq 1 ]]; then return 0; fi
  quote topovae "$@" >>"$run_dir/commands.txt"
}

data_args=()
if [[ -n "$data_dir" ]]; then data_args=(--data-dir "$data_dir"); fi
accel_args=()
if [[ "$budget" == gpu ]]; then accel_args=(--accelerator gpu); fi

dry_note=""
if [[ $dry_run -eq 1 ]]; then dry_note=" (dry run)"; fi
echo "reproduce.sh: budget $budget, seeds 0..$((seeds - 1)), out $out${only:+, only /$only/}$dry_note"
n_selected=0
for base in "${experiments[@]}"; do
  preset="$(preset_of "$base")"
  selected "$base" "$preset" || continue
  n_selected=$((n_selected + 1))
  eval_metrics=()
  if [[ "$base" == *dsprites* ]]; then eval_metrics=(--metrics "$disentanglement_metrics"); fi
  for ((seed = 0; seed < seeds; seed++)); do
    run_dir="$out/runs/$preset/seed-$seed"
    log="$out/logs/$preset-seed-$seed.log"
    echo "## $preset seed $seed: $run_dir"
    if [[ -f "$run_dir/metrics.json" ]]; then
      echo "   already evaluated: skipped"
    else
      if [[ -f "$run_dir/model.json" ]]; then
        echo "   already trained: evaluating"
      elif [[ -f "$run_dir/checkpoints/last.ckpt" ]]; then
        echo "   interrupted run with a checkpoint: resuming"
        run "$log" "${topovae[@]}" train --resume "$run_dir" --no-progress
        record "$run_dir" train --resume "$run_dir" --no-progress
      else
        if [[ -e "$run_dir" ]]; then
          echo "   $run_dir holds no checkpoint and no model (killed before its first" \
               "checkpoint): removing it and training again"
          run "$log" rm -rf -- "$run_dir"
        fi
        train_args=(train --preset "$preset" --seed "$seed" --out "$run_dir" --no-progress
                    ${accel_args[@]+"${accel_args[@]}"} ${data_args[@]+"${data_args[@]}"}
                    ${extra_args[@]+"${extra_args[@]}"})
        run "$log" "${topovae[@]}" "${train_args[@]}"
        record "$run_dir" "${train_args[@]}"
      fi
      eval_args=(evaluate "$run_dir" ${eval_metrics[@]+"${eval_metrics[@]}"}
                 ${data_args[@]+"${data_args[@]}"} ${eval_extra_args[@]+"${eval_extra_args[@]}"})
      run "$log" "${topovae[@]}" "${eval_args[@]}"
      record "$run_dir" "${eval_args[@]}"
    fi
    if [[ ! -f "$run_dir/report/index.html" ]]; then
      run "$log" "${topovae[@]}" report "$run_dir"
      record "$run_dir" report "$run_dir"
    fi
  done
done
[[ $n_selected -gt 0 ]] || die "--only '$only' matches no experiment (see --help for the names)"

# every evaluated run under DIR/runs, in the order of the experiments above (both budgets)
evaluated=()
for base in "${experiments[@]}"; do
  for preset in "$base-cpu" "$base"; do
    [[ -d "$out/runs/$preset" ]] || continue
    while IFS= read -r run_dir; do
      if [[ -f "$run_dir/metrics.json" ]]; then evaluated+=("$run_dir"); fi
    done < <(find "$out/runs/$preset" -mindepth 1 -maxdepth 1 -type d -name 'seed-*' | sort -V)
  done
done

echo "## results: $out/results.md, $out/results.json"
if [[ $dry_run -eq 1 ]]; then
  echo "+ $(quote "$python" -m topovae.report.results RUN... --out "$out/results.md")"
  echo "+ $(quote "${topovae[@]}" compare --by preset --format json RUN...) > $out/results.json"
  exit 0
fi
if [[ ${#evaluated[@]} -eq 0 ]]; then
  die "no evaluated run under $out/runs: nothing to aggregate"
fi
title="Results ($budget budget, $(date -u +%Y-%m-%d))"
run "$out/logs/results.log" "$python" -m topovae.report.results "${evaluated[@]}" \
    --title "$title" --out "$out/results.md"
"${topovae[@]}" compare --by preset --format json "${evaluated[@]}" >"$out/results.json.tmp"
mv "$out/results.json.tmp" "$out/results.json"
echo "aggregated ${#evaluated[@]} runs: $out/results.md, $out/results.json"
