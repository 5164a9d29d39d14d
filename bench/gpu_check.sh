#!/usr/bin/env bash
# Training throughput on one CUDA GPU, sized for a 10-minute slot (run it whenever a GPU is lent):
#   bash bench/gpu_check.sh [OUT_DIR]            # BUDGET_S=540 by default
# 1. 117M at T=128: the published loop (fp32, full logits, fixed batches) against the toolkit's
#    step in fp16 and bf16, fixed and token-budget batches (bench/train_bench.py, one process).
# 2. MFU for 117M / 345M / 762M at T=128 and T=256, fp16 and bf16, compile off, then compile on,
#    in that order, as long as the time budget allows; a configuration that would not finish in
#    the time left is recorded as skipped, so the script always ends in time.
# Writes OUT_DIR/gpu_check.json (every run's figures) and OUT_DIR/gpu_check.png, and prints a table.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_check}
BUDGET_S=${BUDGET_S:-540}
# Smoke test on a CPU: DEVICE=cpu PRECISIONS=bf16 MODELS=tiny SEQS=128 LINES=3000 BASE_BATCH=8
# BATCH_TOKENS=1024 BUDGET_S=300 bash bench/gpu_check.sh
DEVICE=${DEVICE:-cuda} BASE_BATCH=${BASE_BATCH:-64} BATCH_TOKENS=${BATCH_TOKENS:-16384} PRECISIONS=${PRECISIONS:-fp16,bf16} MODELS=${MODELS:-117M 345M 762M} SEQS=${SEQS:-128 256} LINES=${LINES:-30000}
FIRST=$(echo "$MODELS" | cut -d" " -f1)
mkdir -p "$OUT/runs"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$SECONDS

# One database per sequence length, shared by every run of that length.
for seq in $SEQS; do
  turns=$(( seq == 128 ? 8 : 16 ))
  python3 - "$OUT/train$seq.tsv" "$turns" "$LINES" <<'PY'
import sys
from pathlib import Path
from tests.conftest import write_corpus
write_corpus(Path(sys.argv[1]), int(sys.argv[3]), seed=1, max_turns=int(sys.argv[2]), max_words=25)
PY
  python3 prepro.py --corpus "$OUT/train$seq.tsv" --max_seq_len "$seq" --no_pbar --overwrite --workers 8 >/dev/null
done

# name | estimated seconds | train_bench.py arguments
runs=(
  "$FIRST-128-baseline|90|--model configs/$FIRST --seq 128 --batch $BASE_BATCH --precisions $PRECISIONS --batching both"
)
for compile in off on; do
  for model in $MODELS; do
    for seq in $SEQS; do
      batch=$(( BATCH_TOKENS / seq ))
      [[ $compile == on ]] && est=100 || est=35
      runs+=("$model-$seq-compile-$compile|$est|--model configs/$model --seq $seq --batch $batch --precisions $PRECISIONS --batching budget --pad_multiple 64 --compile $compile --no_baseline")
    done
  done
done

for entry in "${runs[@]}"; do
  IFS='|' read -r name est args <<<"$entry"
  left=$(( BUDGET_S - (SECONDS - start) ))
  if (( left < est )); then
    echo "{\"skipped\": \"$left s left, about $est s needed\"}" >"$OUT/runs/$name.json"
    echo "$name: skipped ($left s left)"
    continue
  fi
  seq=$(echo "$args" | sed -E 's/.*--seq ([0-9]+).*/\1/')
  echo "== $name"
  # shellcheck disable=SC2086
  timeout "$left" python3 bench/train_bench.py $args --db "$OUT/train$seq.${seq}len.db" \
      --device "$DEVICE" --steps 5 --rounds 2 --warmup 3 --json "$OUT/runs/$name.json" \
    || echo "{\"failed\": \"exit status $?\"}" >"$OUT/runs/$name.json"
done

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}
(out / "gpu_check.json").write_text(json.dumps(runs, indent=2))
points = []
for name, run in runs.items():
    for variant, row in run.get("results", {}).items():
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"  # None: no baseline run
        print(f"{name:24s} {variant:28s} {row['tokens_per_s']:10.0f} tok/s  MFU {100 * row['mfu']:5.1f}%"
              f"  ratio {ratio:>4s}  pad {100 * row['padding']:.1f}%  peak {row['peak_mem_mb']:.0f} MB")
        points.append((f"{name} {variant}", 100 * row["mfu"]))
    if "results" not in run:
        print(f"{name:24s} {run}")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
fig = Figure(figsize=(10, 0.3 * len(points) + 1))
FigureCanvasAgg(fig)
ax = fig.add_subplot()
ax.barh([p[0] for p in points], [p[1] for p in points])
ax.set_xlabel("MFU % (model FLOPs / measured matmul peak of the precision)")
ax.invert_yaxis()
fig.tight_layout()
fig.savefig(out / "gpu_check.png", dpi=100)
print("wrote", out / "gpu_check.json", out / "gpu_check.png")
PY
echo "total $(( SECONDS - start )) s"
