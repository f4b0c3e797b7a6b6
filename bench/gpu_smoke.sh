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
# timeout_s 560; the summary comes back as $OUT/gpu_smoke.json. Budget: about 9 minutes from a bare machine.
# Extra arguments after `run` go to bench/gpu_smoke.py (`--layers 18`, `--completion-tokens 128`, ...).
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
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" bench/gpu_smoke.py --tokenizer .smoke/tokenizer "$@"
  ;;
*)
  echo "usage: bash bench/gpu_smoke.sh prepare | run [gpu_smoke.py arguments]" >&2
  exit 2
  ;;
esac
