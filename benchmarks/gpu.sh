#!/usr/bin/env bash
# The GPU benchmark in one run, under 8 minutes on one H200 (docs/performance.md, "GPU"):
# LoRA throughput of tunelab vs HF Trainer + PEFT on a 1B-class Llama built from its config
# (bf16, SDPA), then `tunelab plan` vs the measured peak. Results: $OUT/gpu.md (the table for
# the docs), $OUT/gpu.json, $OUT/gpu.log and $OUT/logs.tar.gz (every run's log).
#
# Here, once:   .venv/bin/python benchmarks/gpu_carry.py     (fills .gpu/, about 7 MB)
# On the GPU:   the device tool's run with command "bash benchmarks/gpu.sh", carry [".gpu"],
#               timeout_s 540
# Here, a check of the same path on CPU with a tiny model, the packages the GPU machine
# lacks hidden (benchmarks/device_like/):   bash benchmarks/gpu.sh --cpu-smoke
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=()
SCALE=1
if [[ "${1:-}" == "--cpu-smoke" ]]; then  # processes start slowly on 2 shared cores
  SMOKE=(--smoke)
  SCALE=${GPU_SMOKE_SCALE:-3}
fi
WORK=$(mktemp -d /tmp/tunelab-gpu-bench.XXXXXX)
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
STARTED=$SECONDS

main() {
if [[ ! -d .gpu/wheels || ! -f .gpu/data/instructions.jsonl ]]; then
  echo "no .gpu/wheels or .gpu/data: run 'python benchmarks/gpu_carry.py' here and carry .gpu"
  exit 2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
  HF_DATASETS_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
if [[ ${#SMOKE[@]} -gt 0 ]]; then
  PY=${PYTHON:-$ROOT/.venv/bin/python}
  export TUNELAB_DEVICE_LIKE=$ROOT/benchmarks/h200_packages.txt:$ROOT/.gpu/wheels
  export PYTHONPATH=$ROOT/benchmarks/device_like:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
else
  PY=${PYTHON:-/opt/torch/.venv/bin/python3}
  [[ -x $PY ]] || PY=python3
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl || exit 3
  export PYTHONPATH=$ROOT/src:/tmp/site
fi
echo "python: $PY; work: $WORK"

# the stack imports, and the datasets operations tunelab uses, before any time is spent
timeout 90 "$PY" - <<'EOF' || { echo "preflight failed: see above"; exit 4; }
from importlib.metadata import version
import datasets, pydantic, torch, tunelab.plan.planner, tunelab.train.run  # noqa: F401
names = ("torch", "transformers", "peft", "accelerate", "datasets", "pyarrow", "fsspec", "pydantic")
print(", ".join(f"{n} {version(n)}" for n in names), "| cuda:", torch.cuda.is_available())
ds = datasets.Dataset.from_list([{"a": [1, 2]}, {"a": [3]}]).map(lambda r: {"n": len(r["a"])})
assert ds["n"] == [2, 1], ds["n"]
EOF

B=$ROOT/benchmarks
# seconds: hard limits of the parts (the throughput and plan parts stop starting runs at their
# soft limit, the second number); under 8 minutes in all with the install and the preflight
x=$SCALE
part prepare $((75 * x)) "$PY" "$B/gpu_bench.py" prepare --work "$WORK" \
  --data .gpu/data/instructions.jsonl "${SMOKE[@]}" || exit 5
part throughput $((190 * x)) "$PY" "$B/gpu_bench.py" throughput --work "$WORK" \
  --seconds $((170 * x)) "${SMOKE[@]}"
part plan $((170 * x)) "$PY" "$B/gpu_plan.py" --work "$WORK" --seconds $((150 * x)) "${SMOKE[@]}"
part report 15 "$PY" "$B/gpu_report.py" --work "$WORK" --out "$OUT"
cp "$WORK/plan.log" "$OUT/" 2>/dev/null
(cd "$WORK" && find . \( -name log.txt -o -name plan.log -o -name spec.json -o -name result.json \
  -o -name train_summary.json -o -name '*.yaml' \) -size -4M | tar -czf "$OUT/logs.tar.gz" -T -)
echo "== done in $((SECONDS - STARTED)) s; results in $OUT"
}

part() {  # part NAME HARD_LIMIT_S COMMAND...: one part under a hard time limit
  local name=$1 limit=$2
  shift 2
  echo "== $name (at $((SECONDS - STARTED)) s; at most $limit s)"
  timeout --kill-after=10 "$limit" "$@"
  local code=$?
  [[ $code -eq 0 ]] || echo "== $name: exit $code$([[ $code -eq 124 ]] && echo ' (time limit)')"
  return $code
}

main "$@" 2>&1 | tee "$OUT/gpu.log"
