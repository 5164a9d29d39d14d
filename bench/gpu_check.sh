#!/usr/bin/env bash
# GPU smoke test and throughput figures, for a machine with one CUDA GPU:
# fp16 (dynamic and static loss scale) and bf16 training of the 117M shape, the loader's
# throughput on the same machine, and decoding. Prints tokens/s per run as ratios to the loader.
#   bash bench/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 - "$OUT" <<'PY'
import sys
from pathlib import Path
from tests.conftest import write_corpus
write_corpus(Path(sys.argv[1]) / "train.tsv", int(__import__("os").environ.get("LINES", 40000)), seed=1, max_turns=8, max_words=25)
Path(sys.argv[1], "valid.tsv").write_text("".join(
    f"hello there EOS how are you today\tfine thanks {i}\n" for i in range(64)))
PY
python3 prepro.py --corpus "$OUT/train.tsv" --no_pbar --overwrite --workers 8
common=(--model_name_or_path "${CONFIG:-configs/117M}" --train_input_file "$OUT/train.128len.db"
        --eval_input_file "$OUT/valid.tsv" --train_batch_size 64 --gradient_accumulation_steps 1
        --learning_rate 1e-4 --lr_schedule BERT --num_optim_steps "${STEPS:-200}" --valid_step "${STEPS:-200}" --pbar false)
for variant in "fp16 --fp16 true" "fp16_static --fp16 true --loss_scale 1024" "bf16 --bf16 true" "fp32 --fp16 false"; do
  set -- $variant; name=$1; shift
  python3 LSP_train.py "${common[@]}" --output_dir "$OUT/$name" "$@" 2>&1 | grep -E "INFO (run|step|done)|WARNING|rror" || true
done
python3 - "$OUT" <<'PY'
import csv, glob, sys, json
rows = {}
for name in ("fp16", "fp16_static", "bf16", "fp32"):
    runs = glob.glob(f"{sys.argv[1]}/{name}/GPT2*/train_log.txt")
    if not runs:
        print(name, "no log"); continue
    log = list(csv.DictReader(open(runs[0])))
    first, last = log[10], log[-1]
    tps = (int(last["n_token_real"]) - int(first["n_token_real"])) / (float(last["epoch_time"]) - float(first["epoch_time"]))
    rows[name] = tps
    print(f"{name}: {len(log)} steps, loss {float(log[0]['mean_loss']):.3f} -> {float(last['mean_loss']):.3f}, "
          f"{tps/1e3:.0f}k real tokens/s (steps 11-{len(log)})")
json.dump(rows, open(f"{sys.argv[1]}/train_tokens_per_s.json", "w"))
PY
python3 bench/loader_bench.py --lines "${LINES:-40000}" --batch 64 --seconds 8
python3 - "$OUT" <<'PY'
import glob, sys
run = glob.glob(f"{sys.argv[1]}/fp16/GPT2*/hf_model")[0]
open(f"{sys.argv[1]}/ctx.txt", "w").write("hello there EOS how are you ?\nwhat is up\n")
import decode
assert decode.main(["--model_name_or_path", run, "--input", f"{sys.argv[1]}/ctx.txt",
                    "--output", f"{sys.argv[1]}/hyp.txt", "--method", "beam", "--max_new_tokens", "8"]) == 0
print("decode on GPU:", open(f"{sys.argv[1]}/hyp.txt").read().splitlines())
PY
# Batched decoding and activation checkpointing on the GPU (figures the CPU cannot give).
python3 bench/decode_bench.py --contexts 64 --batch_size 32 --device cuda
python3 bench/checkpointing_bench.py --config configs/345M --batch 16 --seq 256 --passes 3 --device cuda
