#!/usr/bin/env bash
# usage: run_trial.sh NAME SEED [KEY=VALUE ...]: the demo preset for a fixed 3,300 steps, one thread
set -euo pipefail
name=$1; seed=$2; shift 2
out=runs/demo-kl/$name-s$seed; mkdir -p runs/demo-kl
export OMP_NUM_THREADS=1
topovae train --preset tvae-demo --seed $seed --max-steps 3300 --out $out \
    --no-progress train.max_time=null "$@" > $out.log 2>&1
topovae evaluate $out >> $out.log 2>&1
