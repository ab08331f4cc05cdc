// Bilinear taps (align_corners=False) shared by the CPU kernels that resize alpha inside the kernel.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lowlight {

// For each output index: the two source indices and their weights, computed with the arithmetic of
// ATen's CPU upsample_bilinear2d (scale in/out in the op's math type, source index clamped at 0, floorf,
// lambda clamped to [0, 1]; equal sizes copy) so that the resize matches F.interpolate. fused: the source
// index as one fused multiply-add, as ATen's AVX2 / AVX-512 builds of that kernel compute it.
template <typename T>
struct LinearTaps {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;

  LinearTaps(int64_t in, int64_t out, bool fused = false) : i0(out), i1(out), w0(out), w1(out) {
    const T scale = static_cast<T>(in) / static_cast<T>(out);
    for (int64_t o = 0; o < out; ++o) {
      if (in == out) {
        i0[o] = i1[o] = o;
        w0[o] = T(1);
        w1[o] = T(0);
        continue;
      }
      T src = fused ? std::fma(scale, static_cast<T>(o) + T(0.5), T(-0.5))
                    : scale * (static_cast<T>(o) + T(0.5)) - T(0.5);
      if (src < T(0)) src = T(0);
      i0[o] = std::min(static_cast<int64_t>(floorf(src)), in - 1);
      w1[o] = std::min(std::max(src - static_cast<T>(i0[o]), T(0)), T(1));
      i1[o] = i0[o] + (i0[o] < in - 1 ? 1 : 0);
      w0[o] = T(1) - w1[o];
    }
  }
};

}  // namespace lowlight
