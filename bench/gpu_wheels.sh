#!/usr/bin/env bash
# Download (here, where the package registry answers) the wheels a GPU machine without our packages and without a
# network needs for bench/gpu.sh: about 20 MB, at the versions of constraints.txt, for that machine's Python.
#   bash bench/gpu_wheels.sh DIR [PYTHON_VERSION]        (default 3.12, the GPU image's)
# then on the GPU machine: WHEELS=DIR bash bench/gpu.sh OUT
# Kept from the machine's own image: torch and triton (CUDA builds), huggingface_hub (2.x wants httpx2 and hf-xet),
# pyarrow, fsspec, numpy and the rest of its scientific stack.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?give a folder for the wheels}
python_version=${2:-3.12}
pinned() { grep -i "^$1==" constraints.txt; }
wanted=("$(pinned trl)" "$(pinned transformers)" "$(pinned datasets)" "$(pinned accelerate)" "$(pinned peft)"
        "$(pinned tokenizers)" "$(pinned dill)" "$(pinned multiprocess)" "$(pinned gguf)" "liger-kernel==0.8.5")
mkdir -p "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$dir" "${wanted[@]}"
ls -la "$dir"
