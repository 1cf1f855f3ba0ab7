#!/usr/bin/env bash
# Every GPU claim of the README in one run on one H100/H200, under 9 minutes, compiling included:
#   [WHEELS=DIR] bash bench/gpu.sh OUT [PARTS]
# PARTS (comma-separated, default probe,smoke,pretrain,sft): probe, smoke, pretrain, sft, attention, dpo, memory,
# variants. Each part writes OUT/PART.txt; a part that fails or runs out of its time is reported and the others still
# run; OUT/summary.txt lists them all. The parts share one budget (BUDGET seconds, default 510): a part's limit is cut
# to what is left, and a part with under 20 s left is skipped, so the script ends within 9 minutes whatever happens.
# 0. probe: where pretrain-135m's NaN gradients come from: the failed first step once per case (each SDPA backend,
#    micro-batches, bf16 weights, the separator row, eager attention), anomaly mode on the first failing one
#    (bench/gpu_nan_probe.py).
# 1. smoke: `smolalign pretrain` (pretrain-135m on the repo's text), `sft` (sft-smol) and `dpo` (dpo) from it, and
#    `chat` on the result, each the shipped recipe with its GPU defaults and only its size shrunk: exit 0, loss falls.
# 2. pretrain: MFU of the 360M and 1.7B presets at 2,048 tokens with fp32 master weights and in pure bf16,
#    smolalign's Trainer against a bare loop with the same kernels (bench/pretrain_throughput.py --gpu --best).
# 3. sft: the recipe's shape (SmolTalk-like rows, max_length 8,192, ~64k tokens a step), smolalign against TRL's
#    best GPU setting at equal tokens a step, with peak memory (bench/sft_throughput.py --smoltalk).
# Not in the default parts (name them, e.g. `bash bench/gpu.sh OUT attention,dpo,memory,variants`):
# - attention: packed rows through the 4-D mask, per-document sdpa and torch's varlen kernel on one batch of
#   8,192-token rows: loss and gradients equal, forward + backward timed (bench/packed_attention.py).
# - dpo: pairs/s and peak memory at max_length 1,024, with and without precomputed reference log-probs, against
#   TRL's best GPU setting (bench/dpo_throughput.py).
# - memory: `smolalign plan`'s memory estimate against torch.cuda.max_memory_allocated (bench/plan_memory.py).
# - variants: the smoke's pretraining as it failed (Liger off, compile off, fp32 master, 32 x 16, cuDNN attention
#   on), one setting changed a case, two steps each (bench/gpu_smoke.py --variants).
# A machine with CUDA torch but none of our other packages and no network: bring the wheels that
# bench/gpu_wheels.sh downloads (here, with a network) and give their folder as WHEELS; they are installed with
# --no-index --no-deps into OUT/site, on top of the machine's torch, and the repo itself is used from PYTHONPATH.
# TINY=1 runs every part's CPU mode instead (tests/test_bench.py): it proves the script, it measures nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-gpu}
parts=${2:-probe,smoke,pretrain,sft}
tiny=${TINY:-}
python=${PYTHON:-python3}  # the Python that holds torch (a venv's, for TINY=1 here)
budget=${BUDGET:-510}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n ${WHEELS:-} ]]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$out/site" \
    "$WHEELS"/*.whl > "$out/install.txt" 2>&1 || { echo "installing the wheels failed: see $out/install.txt"; exit 1; }
  export PYTHONPATH="$PYTHONPATH:$out/site"  # after the repo; the machine's own torch stays first in sys.path
fi
"$python" - <<'EOF' | tee "$out/machine.txt"
import importlib.metadata as m, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
memory = f", {torch.cuda.get_device_properties(0).total_memory / 2**20:,.0f} MiB" if torch.cuda.is_available() else ""
print(f"machine: {gpu}{memory}; torch {torch.__version__}, CUDA {torch.version.cuda}")
versions = []
for name in ("transformers", "trl", "datasets", "accelerate", "peft", "liger-kernel", "flash-attn", "triton"):
    try:
        versions.append(f"{name} {m.version(name)}")
    except m.PackageNotFoundError:
        versions.append(f"{name} -")
print("; ".join(versions))
EOF
: > "$out/summary.txt"
part() {  # part NAME SECONDS COMMAND...: run it under a time limit, record how it ended, never stop the script
  local name=$1 limit=$2
  shift 2
  [[ ",$parts," == *",$name,"* ]] || return 0
  local left=$((budget - SECONDS))
  if (( left < 20 )); then
    echo "$name: SKIPPED (${left} s of the ${budget} s budget left)" | tee -a "$out/summary.txt"
    return 0
  fi
  (( limit > left )) && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  grep -v 'it/s\]\|s/it\]' "$out/$name.txt" | tail -40
  local verdict="ok"
  [[ $rc == 0 ]] || verdict="FAILED (exit $rc$([[ $rc == 124 ]] && echo ', out of time'))"
  echo "$name: $verdict in $((SECONDS - started)) s" | tee -a "$out/summary.txt"
}
if [[ -n $tiny ]]; then
  budget=${BUDGET:-3600}
  part probe 300 "$python" bench/gpu_nan_probe.py --tiny
  part smoke 600 "$python" bench/gpu_smoke.py "$out/smoke" --tiny
  part attention 300 "$python" bench/packed_attention.py --tiny
  part pretrain 300 "$python" bench/pretrain_throughput.py --gpu --best --preset tiny:2 --weights fp32,bf16 --steps 12 --block 64
  part sft 300 "$python" bench/sft_throughput.py --tiny --smoltalk
  part dpo 300 "$python" bench/dpo_throughput.py --tiny
  part memory 300 "$python" bench/plan_memory.py --tiny
  part variants 300 "$python" bench/gpu_smoke.py "$out/variants" --tiny --variants
else
  # limits from the first H200 run (README, GPU bench): pretrain-135m's smoke run took 94 s for 12 steps (now 6),
  # the four MFU cases ~45 s each; the probe is 11 one-step cases of the 135M model (the default parts' limits add
  # up to the 510 s budget)
  part probe 150 "$python" bench/gpu_nan_probe.py
  part smoke 120 "$python" bench/gpu_smoke.py "$out/smoke"
  part pretrain 150 "$python" bench/pretrain_throughput.py --gpu --best --preset smollm2-360m:8,smollm2-1.7b:4 \
    --weights fp32,bf16 --steps 12
  part sft 90 "$python" bench/sft_throughput.py --smoltalk --preset smollm2-135m --reps 1 --no-compile
  part attention 30 "$python" bench/packed_attention.py
  part dpo 70 "$python" bench/dpo_throughput.py --steps 12
  part memory 50 "$python" bench/plan_memory.py --presets smollm2-360m
  part variants 300 "$python" bench/gpu_smoke.py "$out/variants" --variants  # 5 cases of ~45 s
fi
echo "== summary"
cat "$out/summary.txt"
! grep -q FAILED "$out/summary.txt"
