#!/usr/bin/env bash
# The whole device check of issue 7 (GPU backend), as one script for the GPU machine
# (see ../../docs/targets.md, "Checking on a real GPU"). Runs from the repository root:
#
#   bash benchmarks/device/gpu_check.sh        # with $OUT set by the device tool
#
# The machine (Python 3.12) has CuPy (cupy-cuda13x, NVRTC), JAX, numba, llvmlite and
# nvcc but no network: xdsl and its two small dependencies travel in .whl/ (carry:
# [".whl"]; add /.whl/ to .git/info/exclude), fetched here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl \
#     xdsl==0.74.0 immutabledict ordered-set
# (and llvmlite==0.50.0 too if the machine's llvmlite is older than 0.44).
# It installs isozyme without dependencies, runs the GPU tests and the GPU benchmark,
# and leaves the logs and the results under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/isozyme-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv > "$OUT/device.txt" 2>&1
python3 -c "import isozyme, cupy; print(isozyme.__file__, cupy.__version__)" | tee -a "$OUT/device.txt"
# GPU tests (the device-marked ones and the emulation ones, which must agree)
timeout 240 python3 -m pytest -q -x -p no:cacheprovider \
  tests/runtime/test_cuda_device.py tests/runtime/test_cuda_emu.py 2>&1 | tee "$OUT/tests.log"
# benchmark: elementwise n = 1e8, heat n = 1e7 x 100 steps
timeout 240 python3 benchmarks/gpu_kernels.py --out "$OUT" 2>&1 | tee "$OUT/bench.log"
