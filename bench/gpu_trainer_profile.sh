#!/usr/bin/env bash
# cProfile of LSP_train.py on a GPU (117M shape, fp16, batch 64): where the host spends a step.
# Time inside .tolist()/.item()/isfinite is the host waiting for the GPU; the rest is overhead.
#   bash bench/gpu_trainer_profile.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_profile}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "
from pathlib import Path
from tests.conftest import write_corpus
write_corpus(Path('$OUT/train.tsv'), 20000, seed=1, max_turns=8, max_words=25)"
python3 prepro.py --corpus "$OUT/train.tsv" --no_pbar --overwrite --workers 8
python3 -m cProfile -o "$OUT/train.prof" LSP_train.py --model_name_or_path configs/117M \
  --train_input_file "$OUT/train.128len.db" --skip_eval --output_dir "$OUT/run" \
  --train_batch_size 64 --gradient_accumulation_steps 1 --num_optim_steps 300 --valid_step 100000 \
  --save_step 100000 --fp16 true --pbar false --lr_schedule None --learning_rate 1e-4 2>&1 | tail -2
python3 - "$OUT" <<'PY'
import csv, glob, pstats, sys
log = list(csv.DictReader(open(glob.glob(f"{sys.argv[1]}/run/*/train_log.txt")[0])))
a, b = log[20], log[-1]
print("real tokens/s (steps 21-300):",
      round((int(b["n_token_real"]) - int(a["n_token_real"])) / (float(b["epoch_time"]) - float(a["epoch_time"]))))
print("padded tokens/s:",
      round((int(b["n_token_total"]) - int(a["n_token_total"])) / (float(b["epoch_time"]) - float(a["epoch_time"]))))
pstats.Stats(f"{sys.argv[1]}/train.prof").sort_stats("tottime").print_stats(25)
PY
