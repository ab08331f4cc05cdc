// CUDA kernels of bilateral_transform and its backward (the bilateral-grid model's training path, see
// csrc/cpu/bilateral_transform.cpp): one thread per pixel of a contiguous float32 / float64 RGB image, the grid
// read in place and sliced as nested lerps (y, x, then depth) like bilateral_apply's kernels. The backward adds
// each pixel's coefficient gradient to its 8 grid cells with atomics (the grid is small: cells are shared by
// many pixels, so the order of the float sums, and the last bits of the grid's gradient, vary from run to run),
// and the guide's weight gradients as one block sum per block.
#include <torch/library.h>

#include <cstdint>

#include "../bilateral_apply.h"
#include "common.cuh"
#include "grid_taps.cuh"

namespace lowlight_cuda {
namespace {

constexpr int kCoeffs = static_cast<int>(lowlight::kGridCoeffs);

struct TransformArgs {
  int64_t H, W;
  int D, Gh, Gw;
};

// One pixel's position, colour, guidance and taps.
template <typename T>
struct Pixel {
  int64_t b, offset;  // offset of its channel 0 in x (contiguous B x 3 x H x W)
  T v[4];             // r, g, b, 1
  T pre;              // the guidance before its clamp
  CellTap<T> ty, tx, tz;
};

template <typename T, typename index_t>
__device__ __forceinline__ Pixel<T> pixel_of(index_t p, const T* x, const T* guide, const TransformArgs& a) {
  Pixel<T> q;
  const int64_t X = p % a.W, row = p / a.W, Y = row % a.H;
  q.b = row / a.H;
  const int64_t plane = a.H * a.W;
  q.offset = q.b * 3 * plane + Y * a.W + X;
  for (int c = 0; c < 3; ++c) q.v[c] = x[q.offset + c * plane];
  q.v[3] = T(1);
  q.pre = ((q.v[0] * guide[0] + q.v[1] * guide[1]) + q.v[2] * guide[2]) + guide[3];
  const T g = clamp01(q.pre);
  q.ty = cell_tap<T>(centre<T>(Y, a.H), a.Gh);
  q.tx = cell_tap<T>(centre<T>(X, a.W), a.Gw);
  q.tz = cell_tap<T>(g * T(2) - T(1), a.D);
  return q;
}

// Coefficient k of the pixel at depth cell d, lerped in y then x.
template <typename T>
__device__ __forceinline__ T layer(const T* g, const Pixel<T>& q, const TransformArgs& a, int d) {
  const T* s = g + static_cast<int64_t>(d) * a.Gh * a.Gw;
  const T c0 = q.ty.w0 * s[q.ty.i0 * a.Gw + q.tx.i0] + q.ty.w1 * s[q.ty.i1 * a.Gw + q.tx.i0];
  const T c1 = q.ty.w0 * s[q.ty.i0 * a.Gw + q.tx.i1] + q.ty.w1 * s[q.ty.i1 * a.Gw + q.tx.i1];
  return q.tx.w0 * c0 + q.tx.w1 * c1;
}

template <typename T>
__device__ __forceinline__ const T* coeff_grid(const T* grid, const Pixel<T>& q, const TransformArgs& a, int k) {
  return grid + (q.b * kCoeffs + k) * static_cast<int64_t>(a.D) * a.Gh * a.Gw;
}

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    transform_forward_kernel(const T* __restrict__ x, const T* __restrict__ grid, const T* __restrict__ guide,
                             T* __restrict__ y, TransformArgs a, index_t total) {
  const int64_t plane = a.H * a.W;
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const Pixel<T> q = pixel_of<T>(p, x, guide, a);
    T out[3] = {T(0), T(0), T(0)};
    for (int k = 0; k < kCoeffs; ++k) {
      const T* g = coeff_grid(grid, q, a, k);
      const T coeff = q.tz.w0 * layer(g, q, a, q.tz.i0) + q.tz.w1 * layer(g, q, a, q.tz.i1);
      out[k / 4] += coeff * q.v[k % 4];  // ((a0 r + a1 g) + a2 b) + a3, as the CPU kernel sums
    }
    for (int c = 0; c < 3; ++c) y[q.offset + c * plane] = out[c];
  }
}

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    transform_backward_kernel(const T* __restrict__ x, const T* __restrict__ gy, const T* __restrict__ grid,
                              const T* __restrict__ guide, T* __restrict__ gx, T* __restrict__ ggrid,
                              T* __restrict__ gguide, TransformArgs a, index_t total) {
  const int64_t plane = a.H * a.W, cells = static_cast<int64_t>(a.Gh) * a.Gw;
  T gw[4] = {T(0), T(0), T(0), T(0)};
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const Pixel<T> q = pixel_of<T>(p, x, guide, a);
    T dy[3];
    for (int c = 0; c < 3; ++c) dy[c] = gy[q.offset + c * plane];
    T coeff[kCoeffs];
    T dz = T(0);  // d out / d (the depth coordinate)
    for (int k = 0; k < kCoeffs; ++k) {
      const T* g = coeff_grid(grid, q, a, k);
      const T lo = layer(g, q, a, q.tz.i0), hi = layer(g, q, a, q.tz.i1);
      coeff[k] = q.tz.w0 * lo + q.tz.w1 * hi;
      const T da = dy[k / 4] * q.v[k % 4];
      dz += da * (hi - lo);
      T* gg = ggrid + (q.b * kCoeffs + k) * static_cast<int64_t>(a.D) * cells;
      const int zs[2] = {q.tz.i0, q.tz.i1}, ys[2] = {q.ty.i0, q.ty.i1}, xs[2] = {q.tx.i0, q.tx.i1};
      const T wz[2] = {q.tz.w0, q.tz.w1}, wy[2] = {q.ty.w0, q.ty.w1}, wx[2] = {q.tx.w0, q.tx.w1};
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
          for (int l = 0; l < 2; ++l) {
            const T w = (wz[i] * wy[j]) * wx[l];
            if (w != T(0)) atomicAdd(gg + zs[i] * cells + ys[j] * a.Gw + xs[l], w * da);
          }
    }
    const T dpre = (q.tz.inside && q.pre >= T(0) && q.pre <= T(1)) ? dz * static_cast<T>(a.D) : T(0);
    for (int c = 0; c < 3; ++c) {
      T sum = T(0);
      for (int o = 0; o < 3; ++o) sum += dy[o] * coeff[4 * o + c];
      gx[q.offset + c * plane] = sum + dpre * guide[c];
    }
    for (int j = 0; j < 4; ++j) gw[j] += dpre * q.v[j];
  }
  for (int j = 0; j < 4; ++j) {
    const T s = block_sum(gw[j]);
    if (threadIdx.x == 0) atomicAdd(gguide + j, s);
  }
}

TransformArgs args_of(const at::Tensor& x, const at::Tensor& grid) {
  return TransformArgs{x.size(2), x.size(3), static_cast<int>(grid.size(2)), static_cast<int>(grid.size(3)),
                       static_cast<int>(grid.size(4))};
}

at::Tensor bilateral_transform_cuda(const at::Tensor& x_in, const at::Tensor& grid_in, const at::Tensor& guide_in) {
  const char* op = "bilateral_transform";
  TORCH_CHECK(x_in.is_cuda(), op, ": x must be a CUDA tensor, got one on ", x_in.device());
  lowlight::check_bilateral_transform_inputs(op, x_in, grid_in, guide_in);
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grid = grid_in.contiguous(), guide = guide_in.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t total = x.size(0) * x.size(2) * x.size(3);
  if (total == 0) return y;
  const TransformArgs a = args_of(x, grid);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_transform", [&] {
    const auto *xp = x.const_data_ptr<scalar_t>(), *gp = grid.const_data_ptr<scalar_t>(),
               *wp = guide.const_data_ptr<scalar_t>();
    auto* yp = y.mutable_data_ptr<scalar_t>();
    if (fits_int32(total))
      transform_forward_kernel<scalar_t, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
          xp, gp, wp, yp, a, static_cast<int32_t>(total));
    else
      transform_forward_kernel<scalar_t, int64_t><<<grid_for(total), kThreads, 0, stream>>>(xp, gp, wp, yp, a, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bilateral_transform_backward_cuda(const at::Tensor& grad_y,
                                                                                 const at::Tensor& x_in,
                                                                                 const at::Tensor& grid_in,
                                                                                 const at::Tensor& guide_in) {
  const char* op = "bilateral_transform_backward";
  TORCH_CHECK(x_in.is_cuda(), op, ": x must be a CUDA tensor, got one on ", x_in.device());
  lowlight::check_bilateral_transform_inputs(op, x_in, grid_in, guide_in);
  lowlight::check_bilateral_transform_grad(op, grad_y, x_in);
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), gy = grad_y.contiguous();
  const at::Tensor grid = grid_in.contiguous(), guide = guide_in.contiguous();
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor ggrid = at::zeros_like(grid, at::MemoryFormat::Contiguous);
  at::Tensor gguide = at::zeros_like(guide, at::MemoryFormat::Contiguous);
  const int64_t total = x.size(0) * x.size(2) * x.size(3);
  if (total == 0) return {gx, ggrid, gguide};
  const TransformArgs a = args_of(x, grid);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_transform_backward", [&] {
    const auto *xp = x.const_data_ptr<scalar_t>(), *gyp = gy.const_data_ptr<scalar_t>(),
               *gp = grid.const_data_ptr<scalar_t>(), *wp = guide.const_data_ptr<scalar_t>();
    auto *gxp = gx.mutable_data_ptr<scalar_t>(), *ggp = ggrid.mutable_data_ptr<scalar_t>(),
         *gwp = gguide.mutable_data_ptr<scalar_t>();
    if (fits_int32(total))
      transform_backward_kernel<scalar_t, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
          xp, gyp, gp, wp, gxp, ggp, gwp, a, static_cast<int32_t>(total));
    else
      transform_backward_kernel<scalar_t, int64_t><<<grid_for(total), kThreads, 0, stream>>>(
          xp, gyp, gp, wp, gxp, ggp, gwp, a, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gx, ggrid, gguide};
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) {
  m.impl("bilateral_transform", &lowlight_cuda::bilateral_transform_cuda);
  m.impl("bilateral_transform_backward", &lowlight_cuda::bilateral_transform_backward_cuda);
}
