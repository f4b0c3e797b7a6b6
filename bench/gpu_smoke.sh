#!/usr/bin/env bash
# GPU smoke test, one shot (issue 22): a stage 1 step of the shipped Qwen3-8B-Base config and the embedded
# backend's batched generation on a random-weight model of Qwen3-8B's shape, on one GPU of a bare machine
# with no network. The GPU image has torch, transformers and accelerate but no trl, datasets or vLLM, so
# what is missing travels as wheels (64 MiB at most) and the tokenizer as files.
#
#   bash bench/gpu_smoke.sh prepare   # here, with network to the package index: fills .whl/ and .smoke/
#   bash bench/gpu_smoke.sh run       # there: installs the wheels into /tmp/site, runs bench/gpu_smoke.py
#
# With the workplace's device tool: run `bash bench/gpu_smoke.sh run` with carry [".whl", ".smoke"] and
# timeout_s 560; the summary comes back as $OUT/gpu_smoke.json, written after every phase.
# Extra arguments after `run` go to bench/gpu_smoke.py (`--layers 18`, `--completion-tokens 128`, ...).
#
# Expected wall time on one H100 (80 GB), by estimate, after the machine has started: about 6 minutes.
#   wheels install and import check     ~0.5 min
#   model: Qwen3-8B's width, 13 of its 36 layers (3.75B parameters: 16 bytes each fit 70% of 80 GiB),
#     random init on the GPU and a 7.5 GB bf16 save                                         ~1 min
#   stage 1 step: fp32 load (15 GB read), 8 rollouts of 256 tokens with transformers' generate,
#     backward and AdamW; its 15 GB final save, deleted after                                ~3 min
#   embedded generation: load, 32 prompts x 4 samples x 128 tokens                           ~1 min
# Disk: the bf16 model and the step's final save, about 23 GB at most (the 8B shape asked for 49).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

case "${1:-}" in
prepare)
  # Versions as this checkout's environment has them; Python 3.12 wheels for the GPU image.
  versions=$("$PY" - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("trl", "datasets", "dill", "multiprocess", "transformers")))
PYEOF
)
  rm -rf .whl .smoke && mkdir -p .whl .smoke
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl $versions
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl .
  "$PY" - <<'PYEOF'
from transformers import AutoTokenizer
from medssr_hub.modeling import ensure_embedded_model
AutoTokenizer.from_pretrained(ensure_embedded_model()).save_pretrained(".smoke/tokenizer")
PYEOF
  du -sh .whl .smoke
  ;;
run)
  shift
  [[ -d .whl && -d .smoke/tokenizer ]] || { echo "gpu_smoke.sh: run 'bash bench/gpu_smoke.sh prepare' first" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  export MEDSSR_HUB_ROOT=/tmp/medssr-smoke-hub OUT=${OUT:-/tmp/medssr-smoke}
  mkdir -p "$OUT"
  # The carried wheels beside the image's torch and transformers: they import together, or one line says why.
  if ! err=$("$PY" -c "import torch, transformers, accelerate, datasets, trl; import medssr_hub.training.grpo" 2>&1); then
    line="the carried wheels do not import beside this image's packages: $(tail -n1 <<<"$err")"
    echo "gpu_smoke.sh: $line" >&2
    "$PY" -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' "$line" >"$OUT/gpu_smoke.json"
    exit 3
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" bench/gpu_smoke.py --tokenizer .smoke/tokenizer "$@"
  ;;
*)
  echo "usage: bash bench/gpu_smoke.sh prepare | run [gpu_smoke.py arguments]" >&2
  exit 2
  ;;
esac
