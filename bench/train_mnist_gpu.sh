#!/usr/bin/env bash
# Train the three networks of the MNIST rung on one GPU, each within a wall-clock budget:
#   score model (U-Net, EDM)          ~5   min   -> OUT/score/score_model.pt + .json, train_log.json, samples.png
#   noise-level classifier (SimpleCNN) ~1.5 min  -> OUT/classifier/mnist_noise_classifier.pt + .json
#   FID feature net + test statistics  ~0.5 min  -> OUT/features/mnist_feature_net.pt + .json, mnist_fid_ref_test.pt
# and print the timings (also in OUT/timings.json).  Every command stops cleanly at its --max-minutes and saves.
#
# usage:   bench/train_mnist_gpu.sh OUT_DIR
# env:     PYTHON (default python3; needs torch + torchvision and this package importable, e.g. `pip install -e .`)
#          DEVICE (default cuda), SCORE_MINUTES (5), CLASSIFIER_MINUTES (1.5), FEATURES_MINUTES (0.5),
#          SCORE_ARGS / CLASSIFIER_ARGS / FEATURES_ARGS: extra arguments appended to each command (they win).
# CPU smoke test (what was run before shipping this script):
#   DEVICE=cpu SCORE_ARGS="--steps 20 --batch 8" CLASSIFIER_ARGS="--steps 60 --eval-n 200" \
#   FEATURES_ARGS="--epochs 0.02" bench/train_mnist_gpu.sh /tmp/mnist_gpu_smoke
# Afterwards copy into dmcmc_edu/weights/ (package data, shipped in the wheel):
#   OUT/score/score_model.pt -> dmcmc_edu/weights/mnist_score_unet.pt, OUT/score/score_model.json -> mnist_score_unet.json
#   OUT/classifier/mnist_noise_classifier.{pt,json}, OUT/features/mnist_feature_net.{pt,json}, mnist_fid_ref_test.pt
# then re-execute the notebook (its outputs change with the weights) and regenerate the ladder:
#   .venv/bin/python -m jupyter nbconvert --to notebook --execute --inplace notebooks/06_mnist.ipynb
#   .venv/bin/python bench/mnist_ladder.py --fast [--device cuda]      (CPU: re-run with --max-minutes until complete)
set -uo pipefail
OUT=${1:?usage: $0 OUT_DIR}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

"$PY" - <<'EOF'
import torch, platform
print(f"python {platform.python_version()}  torch {torch.__version__}  cuda available {torch.cuda.is_available()}"
      + (f"  {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF

declare -A SECONDS_OF STATUS_OF
run() {  # run NAME COMMAND... ; the JSON summary goes to OUT/NAME.log
  local name=$1; shift
  local t0 ms
  t0=$(date +%s%N)
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  STATUS_OF[$name]=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  SECONDS_OF[$name]=$(printf "%d.%03d" $((ms / 1000)) $((ms % 1000)))
  tail -n 40 "$OUT/$name.log"
  echo "== $name: exit ${STATUS_OF[$name]}, ${SECONDS_OF[$name]} s"
}

# shellcheck disable=SC2086  # the *_ARGS are meant to split into words
run score "$PY" -m dmcmc_edu train-score --dataset mnist --out "$OUT/score" --device "$DEVICE" \
    --max-minutes "${SCORE_MINUTES:-5}" --steps 200000 --batch 512 --lr 1e-3 --ema-decay 0.999 \
    --checkpoint-every 2000 --quiet ${SCORE_ARGS:-}
# shellcheck disable=SC2086
run classifier "$PY" -m dmcmc_edu train-mnist-classifier --out "$OUT/classifier" --device "$DEVICE" \
    --max-minutes "${CLASSIFIER_MINUTES:-1.5}" --steps 200000 --batch 256 --lr-schedule cosine --overwrite \
    --quiet ${CLASSIFIER_ARGS:-}
# shellcheck disable=SC2086
run features "$PY" -m dmcmc_edu train-mnist-features --out "$OUT/features" --device "$DEVICE" \
    --max-minutes "${FEATURES_MINUTES:-0.5}" --epochs 5 --quiet ${FEATURES_ARGS:-}

cat > "$OUT/timings.json" <<EOF
{"device": "$DEVICE",
 "score": {"seconds": ${SECONDS_OF[score]}, "exit": ${STATUS_OF[score]}},
 "classifier": {"seconds": ${SECONDS_OF[classifier]}, "exit": ${STATUS_OF[classifier]}},
 "features": {"seconds": ${SECONDS_OF[features]}, "exit": ${STATUS_OF[features]}}}
EOF
echo "== timings (wall seconds per command, start-up and evaluation included):"
cat "$OUT/timings.json"
[ "${STATUS_OF[score]}" = 0 ] && [ "${STATUS_OF[classifier]}" = 0 ] && [ "${STATUS_OF[features]}" = 0 ]
