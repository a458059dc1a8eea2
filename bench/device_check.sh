#!/usr/bin/env bash
# The GPU one-shot: everything glassformer claims on a CUDA machine, in one run of about 8
# minutes on an H100/H200-class GPU, its logs in $OUT (default /tmp/device-check).
#
#   TEXT=path/to/tinyshakespeare.txt bash bench/device_check.sh
#
# Runs from the repository root with the machine's own python3 (a PyTorch with CUDA; no
# install, no network: glassformer is imported from the checkout), in this order:
#   1. the tests that need a GPU (tests/train/test_precision.py: bf16 autocast, a CUDA run)
#   2. bench/train_step: glassformer vs transformers' GPT-2 training step on the GPU, fp32 and
#      bf16 + torch.compile (attention through torch's fused SDPA, flash on bf16)
#   3. the `shakespeare-gpu` preset (nanoGPT's shakespeare_char) on tinyshakespeare, bf16 and
#      compiled: nanoGPT reports val loss 1.4697; the script says whether the run reached 1.47
# and exits non-zero if any step failed. A device machine of this workplace takes it as:
#   mkdir -p .device && cp ../shared/data/tinyshakespeare.txt .device/   (once, here;
#   .device/ is ignored by git) and then the run: carry [".device"], command
#   `TEXT=.device/tinyshakespeare.txt OUT=$OUT bash bench/device_check.sh`, timeout 600.
set -uo pipefail
cd "$(dirname "$0")/.."
TEXT=${TEXT:-.device/tinyshakespeare.txt}
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
failed=0
step() {  # step NAME COMMAND...: run it, its output to the screen and $OUT/NAME.log
    echo "== $1: ${*:2}"
    "${@:2}" 2>&1 | tee "$OUT/$1.log" || { echo "== $1 FAILED"; failed=1; }
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name())" | tee -a "$OUT/gpu.log" || exit 1
[ -f "$TEXT" ] || { echo "no corpus at $TEXT: set TEXT to tinyshakespeare.txt"; exit 1; }

step tests python3 -m pytest -q -p no:cacheprovider -o addopts= tests/train/test_precision.py
step train_step_fp32 python3 -m bench.train_step --device cuda --steps 20
step train_step_bf16 python3 -m bench.train_step --device cuda --bf16 --compile --steps 20
step shakespeare python3 -m glassformer train --preset shakespeare-gpu --text "$TEXT" \
    --out "${RUN:-/tmp/shakespeare-gpu}" --train.device=cuda --train.compile=true
val=$(grep -o 'done: step [0-9]*, val loss [0-9.]*' "$OUT/shakespeare.log" | tail -1 | awk '{print $NF}')
echo "shakespeare-gpu: val loss ${val:-none} (nanoGPT: 1.4697; goal <= 1.47)"
python3 -c "import sys; sys.exit(0 if float('${val:-9}') <= 1.47 else 1)" || failed=1
exit $failed
