#!/usr/bin/env bash
# The GPU figures in the README, in one command on one GPU (CUDA torch installed; liger-kernel and flash-attn are
# used where installed, and the output says which were):
#   bash bench/gpu.sh [OUTPUT_DIR] [PARTS]        PARTS: any of pretrain,sft,memory (default: all three)
# 1. pretrain: MFU and peak memory of the 135M, 360M and 1.7B presets at 2,048 tokens, `smolalign pretrain` with the
#    speed settings train/speed.py chooses (Liger, fused AdamW, torch.compile, flash-attn where installed) against a
#    bare PyTorch loop with the same weights and kernels (~3 minutes a preset on an H100, compiling included).
# 2. sft: SFT of the 135M and 360M presets in bf16, smolalign with its GPU speed settings against TRL's best GPU
#    setting (padding-free, flash-attn where installed, Liger, fused AdamW) at equal tokens a step, and TRL's
#    padded and length-grouped settings; peak memory of each side; median of 3.
# 3. memory: `smolalign plan`'s memory estimate against torch.cuda.max_memory_allocated (bench/plan_memory.py).
# Without a GPU, `python bench/<script> --tiny` runs the same code on CPU (tests/test_bench.py, tests/test_plan.py).
set -uo pipefail
out=${1:-bench-gpu}
parts=${2:-pretrain,sft,memory}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
python3 -c "import importlib.util as u; print('liger-kernel', bool(u.find_spec('liger_kernel')), '| flash-attn',
bool(u.find_spec('flash_attn')))" | tee -a "$out/machine.txt"
progress='it/s\]\|s/it\]'
if [[ $parts == *pretrain* ]]; then
  for run in "smollm2-135m 16" "smollm2-360m 8" "smollm2-1.7b 4"; do
    set -- $run
    timeout 420 python3 bench/pretrain_throughput.py --gpu --best --preset "$1" --batch "$2" --steps 40 2>&1 \
      | grep -v "$progress" | tee "$out/pretrain_$1.txt"
  done
fi
if [[ $parts == *sft* ]]; then
  for preset in smollm2-135m smollm2-360m; do
    timeout 900 python3 bench/sft_throughput.py --preset "$preset" --rows 3000 --reps 3 --no-compile \
      --sides "=smolalign packed;TRL best GPU;group_by_length, batch;=TRL packed (padding-free)" 2>&1 \
      | grep -v "$progress" | tee "$out/sft_$preset.txt"
  done
fi
if [[ $parts == *memory* ]]; then
  timeout 420 python3 bench/plan_memory.py 2>&1 | tee "$out/plan_memory.txt"
fi
