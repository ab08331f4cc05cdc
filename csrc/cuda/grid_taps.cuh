// The bilateral grid's taps, shared by the CUDA kernels of bilateral_apply and bilateral_transform: grid_sample's
// source coordinate (align_corners=False, border padding) as two cells and their lerp weights, the pixel centres
// it is taken at, and the [0, 1] clamp of colours and guidance (the CPU kernels keep their own vectorized forms).
#pragma once

#include <cstdint>

namespace lowlight_cuda {

template <typename T>
__device__ __forceinline__ T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);  // NaN stays NaN
}

// The normalized centre (2 o + 1) / n - 1 of index o of n.
template <typename T>
__device__ __forceinline__ T centre(int64_t o, int64_t n) {
  return (static_cast<T>(o) * T(2) + T(1)) / static_cast<T>(n) - T(1);
}

// Cells i0, i1 (i1 = i0 + 1 but for the last cell) and weights w0 + w1 = 1 of the normalized coordinate c over
// n cells; `inside`: strictly inside before the border clamp (grid_sample passes the coordinate a gradient
// there only).
template <typename T>
struct CellTap {
  int i0, i1;
  T w0, w1;
  bool inside;
};

template <typename T>
__device__ __forceinline__ CellTap<T> cell_tap(T c, int n) {
  const T s = ((c + T(1)) * static_cast<T>(n) - T(1)) / T(2);
  const T top = static_cast<T>(n - 1);
  const T v = s > T(0) ? (s < top ? s : top) : T(0);  // NaN -> cell 0 explicitly (the pixel's result is NaN)
  CellTap<T> t;
  t.i0 = static_cast<int>(v);
  t.i1 = t.i0 + 1 < n ? t.i0 + 1 : n - 1;
  t.w1 = v - static_cast<T>(t.i0);
  t.w0 = static_cast<T>(t.i0 + 1) - v;
  t.inside = s > T(0) && s < top;
  return t;
}

}  // namespace lowlight_cuda
