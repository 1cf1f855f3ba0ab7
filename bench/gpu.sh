#!/usr/bin/env bash
# The GPU figures in the README, in one command on one GPU (about 12 minutes on an H100, CUDA torch installed):
#   bash bench/gpu.sh [OUTPUT_DIR]
# 1. Pretraining MFU of the 360M preset at 2,048 tokens in bf16 (smolalign's Trainer and a bare loop).
# 2. SFT throughput of the 135M preset in bf16: smolalign packed rows (4-D mask, and per-document attention)
#    against TRL's padded, length-grouped and padding-free settings, median of 3.
set -uo pipefail
out=${1:-bench-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
timeout 200 python3 bench/pretrain_throughput.py --gpu --steps 30 --batch 8 2>&1 | tee "$out/pretrain_mfu.txt"
timeout 900 python3 bench/sft_throughput.py --preset smollm2-135m --rows 3000 --reps 3 --no-compile \
    --sides "smolalign packed;group_by_length;TRL packed" 2>&1 \
    | grep -v "it/s\]\|s/it\]" | tee "$out/sft_throughput.txt"
