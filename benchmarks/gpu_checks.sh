#!/usr/bin/env bash
# Everything that needs a GPU, as one script (about 5-8 minutes on one H100/H200):
#   bash benchmarks/gpu_checks.sh            # figures into $OUT (default gpu-results/)
# 1. bench_gpu.py, (A) the original's defaults vs (B) ours, plain and with packing;
# 2. the gpu-marked tests: FSDP2 with bf16 parameters and fp32 gradient reduction over NCCL.
set -euo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$PWD/src} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tail -n 60
python benchmarks/bench_gpu.py --pack --out "$OUT/bench_gpu_pack.json" 2>&1 | tail -n 60
python -m pytest -q -m gpu tests/training/test_distributed.py -p no:cacheprovider 2>&1 | tail -n 20 | tee "$OUT/gpu_tests.txt"
