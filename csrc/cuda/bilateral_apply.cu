// CUDA kernel of bilateral_apply: a bilateral grid of affine colour transforms (HDRNet) applied to an image in its
// own dtype (uint8, uint16, float16, bfloat16, float32, float64) and memory layout, one thread per pixel, read and
// written once through the image's own strides (an H x W x C photo is a channels_last tensor). The grid
// (B, 12, D, Gh, Gw) float32 is tiny and read in place (cached): each pixel slices its 12 coefficients
// trilinearly at its position and guidance as grid_sample does (align_corners=False, border), as nested lerps
// in y, x and depth like the CPU kernel. Math in float (float64 images: double, as the reference keeps them);
// integers rounded to nearest even; gray gets the mean of the three results; alpha channels are copied.
#include <torch/library.h>

#include <cstdint>

#include "../bilateral_apply.h"
#include "common.cuh"
#include "grid_taps.cuh"

namespace lowlight_cuda {
namespace {

constexpr int kCoeffs = static_cast<int>(lowlight::kGridCoeffs);

struct BilateralArgs {
  int64_t B, C, H, W;
  int64_t xs[4], ys[4];  // strides of image and output (b, c, y, x)
  int D, Gh, Gw, color;
  float scale;           // 255, 65535, or 0 for float images
};

template <typename T, typename A>
__device__ __forceinline__ A load_value(const T* p, float scale) {
  const A v = static_cast<A>(*p);
  return scale > 0.f ? v / static_cast<A>(scale) : clamp01(v);
}

template <typename T, typename A, typename index_t>
__global__ void __launch_bounds__(kThreads)
    bilateral_apply_kernel(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ grid,
                           const float* __restrict__ guide, BilateralArgs a, index_t total) {
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const auto [b, Y, X, xp, yp] = strided_pixel(p, a.H, a.W, x, a.xs, y, a.ys);
    A v[3];
    for (int c = 0; c < 3; ++c) v[c] = c < a.color ? load_value<T, A>(xp + c * a.xs[1], a.scale) : v[0];
    const A gd = clamp01(((v[0] * A(guide[0]) + v[1] * A(guide[1])) + v[2] * A(guide[2])) + A(guide[3]));
    const CellTap<A> ty = cell_tap<A>(centre<A>(Y, a.H), a.Gh);
    const CellTap<A> tx = cell_tap<A>(centre<A>(X, a.W), a.Gw);
    const CellTap<A> tz = cell_tap<A>(gd * A(2) - A(1), a.D);
    const int64_t plane = static_cast<int64_t>(a.Gh) * a.Gw;
    A coeff[kCoeffs];
    for (int k = 0; k < kCoeffs; ++k) {
      const float* g = grid + (b * kCoeffs + k) * a.D * plane;
      auto at = [&](int d, int gy, int gx) { return static_cast<A>(g[d * plane + gy * a.Gw + gx]); };
      auto layer = [&](int d) {  // y, then x, as the CPU kernel's row table
        const A c0 = ty.w0 * at(d, ty.i0, tx.i0) + ty.w1 * at(d, ty.i1, tx.i0);
        const A c1 = ty.w0 * at(d, ty.i0, tx.i1) + ty.w1 * at(d, ty.i1, tx.i1);
        return tx.w0 * c0 + tx.w1 * c1;
      };
      coeff[k] = tz.w0 * layer(tz.i0) + tz.w1 * layer(tz.i1);
    }
    A out[3];
    for (int c = 0; c < 3; ++c)
      out[c] = clamp01(((coeff[4 * c] * v[0] + coeff[4 * c + 1] * v[1]) + coeff[4 * c + 2] * v[2]) + coeff[4 * c + 3]);
    if (a.color == 1) {
      *yp = store_value<T, A>(((out[0] + out[1]) + out[2]) / A(3), a.scale);
    } else {
      for (int c = 0; c < 3; ++c) yp[c * a.ys[1]] = store_value<T, A>(out[c], a.scale);
    }
    for (int64_t c = a.color; c < a.C; ++c) yp[c * a.ys[1]] = xp[c * a.xs[1]];  // alpha channels
  }
}

template <typename T, typename A>
void launch_bilateral(const at::Tensor& image, const at::Tensor& grid, const at::Tensor& guide, at::Tensor& out,
                      const BilateralArgs& a, cudaStream_t stream) {
  const int64_t total = a.B * a.H * a.W;  // pixel offsets are int64 (strides): index_t only counts pixels
  const T* x = image.const_data_ptr<T>();
  T* y = out.mutable_data_ptr<T>();
  const float* g = grid.const_data_ptr<float>();
  const float* w = guide.const_data_ptr<float>();
  if (fits_int32(total))
    bilateral_apply_kernel<T, A, int32_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, g, w, a,
                                                                                  static_cast<int32_t>(total));
  else
    bilateral_apply_kernel<T, A, int64_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, g, w, a, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor bilateral_apply_cuda(const at::Tensor& image, const at::Tensor& grid_in, const at::Tensor& guide_in) {
  const char* op = "bilateral_apply";
  TORCH_CHECK(image.is_cuda(), op, ": image must be a CUDA tensor, got one on ", image.device());
  lowlight::check_bilateral_inputs(image, grid_in, guide_in);
  const auto t = image.scalar_type();
  const c10::cuda::CUDAGuard device_guard(image.device());
  at::Tensor out = at::empty_like(image);  // the fake kernel's rule: same dtype and memory layout
  if (out.numel() == 0) return out;
  const at::Tensor grid = grid_in.contiguous();
  const at::Tensor guide = guide_in.contiguous();
  BilateralArgs a;
  a.B = image.size(0), a.C = image.size(1), a.H = image.size(2), a.W = image.size(3);
  for (int d = 0; d < 4; ++d) a.xs[d] = image.stride(d), a.ys[d] = out.stride(d);
  a.D = static_cast<int>(grid.size(2)), a.Gh = static_cast<int>(grid.size(3)), a.Gw = static_cast<int>(grid.size(4));
  a.color = a.C <= 2 ? 1 : 3;
  a.scale = t == at::kByte ? 255.f : t == at::kUInt16 ? 65535.f : 0.f;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (t) {
    case at::kByte: launch_bilateral<uint8_t, float>(image, grid, guide, out, a, stream); break;
    case at::kUInt16: launch_bilateral<uint16_t, float>(image, grid, guide, out, a, stream); break;
    case at::kHalf: launch_bilateral<at::Half, float>(image, grid, guide, out, a, stream); break;
    case at::kBFloat16: launch_bilateral<at::BFloat16, float>(image, grid, guide, out, a, stream); break;
    case at::kFloat: launch_bilateral<float, float>(image, grid, guide, out, a, stream); break;
    default: launch_bilateral<double, double>(image, grid, guide, out, a, stream); break;
  }
  return out;
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) { m.impl("bilateral_apply", &lowlight_cuda::bilateral_apply_cuda); }
