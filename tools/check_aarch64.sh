#!/usr/bin/env bash
# Compiles the CPU sources for aarch64 (-march=armv8-a) with Debian's cross compiler against the headers of
# .venv's torch: shows that the x86 parts (clones, intrinsics) are guarded. Compile only: no aarch64 torch
# here to link against. Needs `apt-get install g++-aarch64-linux-gnu`; about 2-8 min on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-aarch64-linux-gnu-g++}
inc=$(.venv/bin/python -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))")
defs=$(.venv/bin/python -c "from lowlight_core.controls import native_defines as d; print(' '.join(f'-D{k}={v}' for k, v in d()))")
out=$(mktemp -d)
for f in csrc/ops.cpp csrc/cpu/*.cpp; do
  $CXX -march=armv8-a -std=c++20 -O3 -fopenmp -fPIC $defs $inc -c "$f" -o "$out/$(basename "$f" .cpp).o"
  file "$out/$(basename "$f" .cpp).o"
done
rm -rf "$out"
