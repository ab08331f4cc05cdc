// Shared pieces of the CUDA kernels: input checks, launch sizing, block reductions and the final
// (deterministic) reduction of per-block loss partials to a 0-d tensor.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../limits.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace lowlight_cuda {

constexpr int kThreads = 256;         // threads per block of every kernel (a multiple of 32)
constexpr int64_t kMaxBlocks = 65535; // kernels loop grid-stride beyond this many blocks

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for `items` work items of `per_block` each (items > 0).
inline unsigned int grid_for(int64_t items, int64_t per_block = kThreads) {
  return static_cast<unsigned int>(std::min(std::max<int64_t>(ceil_div(items, per_block), 1), kMaxBlocks));
}

// 32-bit index arithmetic (much cheaper divisions on the GPU) is safe when index + grid stride cannot
// overflow: the stride is at most kMaxBlocks * kThreads < 2^24.
inline bool fits_int32(int64_t n) { return n <= std::numeric_limits<int32_t>::max() / 2; }

// 1 / d with 1 / 0 = inf, so that an empty batch gives 0 * inf = nan like the reference's mean of nothing.
inline double inv_or_inf(double d) { return d == 0.0 ? std::numeric_limits<double>::infinity() : 1.0 / d; }

template <typename scalar_t>
constexpr at::ScalarType acc_scalar_type() {
  return c10::CppTypeToScalarType<at::opmath_type<scalar_t>>::value;
}

// ------------------------------------------------------------------------------------------ input checks

inline bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_cuda_image(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D (B, C, H, W), got shape ", t.sizes());
  TORCH_CHECK(supported_dtype(t.scalar_type()), op, ": ", name,
              " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ", t.scalar_type());
  TORCH_CHECK(t.size(1) >= 1 && t.size(2) >= 1 && t.size(3) >= 1, op, ": ", name,
              " has an empty dimension: shape ", t.sizes());
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(t.size(1) <= kIntMax && t.size(2) <= kIntMax && t.size(3) <= kIntMax, op, ": ", name,
              " has a channel, height or width of 2^31 or more: shape ", t.sizes());
}

inline void check_same(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                       const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(), op, ": ", a_name, " is on ", a.device(), " but ", b_name, " is on ",
              b.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", a_name, " is ", a.scalar_type(), " but ", b_name,
              " is ", b.scalar_type());
}

// The incoming gradient of a scalar loss: one element on the input's device (its dtype is converted).
inline at::Tensor checked_scalar_grad(const char* op, const at::Tensor& grad, const at::Tensor& like) {
  TORCH_CHECK(grad.numel() == 1, op, ": grad must have one element, got shape ", grad.sizes());
  TORCH_CHECK(grad.device() == like.device(), op, ": grad is on ", grad.device(), " but the input is on ",
              like.device());
  TORCH_CHECK(grad.is_floating_point(), op, ": grad must be floating-point, got ", grad.scalar_type());
  return grad.to(like.scalar_type()).contiguous();
}

// ------------------------------------------------------------------------------------------ device helpers

// Linear thread index with a grid-stride loop over [0, n).
#define LOWLIGHT_GRID_STRIDE(index_t, p, n)                                                                \
  for (index_t p = static_cast<index_t>(blockIdx.x) * static_cast<index_t>(blockDim.x) +                  \
                   static_cast<index_t>(threadIdx.x);                                                      \
       p < (n); p += static_cast<index_t>(gridDim.x) * static_cast<index_t>(blockDim.x))

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of `v` over the block (blockDim a multiple of 32, at most 1024 threads); the result is valid in
// thread 0. Every thread of the block must call it: it synchronizes.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[32];
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int warps = (blockDim.x * blockDim.y * blockDim.z + 31) / 32;
  __syncthreads();  // a previous call may still be reading warp_sums
  v = warp_sum(v);
  if ((tid & 31) == 0) warp_sums[tid >> 5] = v;
  __syncthreads();
  if (tid < 32) {
    v = tid < warps ? warp_sums[tid] : T(0);
    v = warp_sum(v);
  }
  return v;
}

// Pixel p (in b, y, x order) of a B x H x W image read and written in place through its own strides (b, c, y, x),
// so that any memory layout (an H x W x C photo is channels_last) needs no copy. in / out: its channel 0.
template <typename T, typename index_t>
struct StridedPixel {
  index_t b, Y, X;
  const T* in;
  T* out;
};

template <typename T, typename index_t>
__device__ __forceinline__ StridedPixel<T, index_t> strided_pixel(index_t p, int64_t H, int64_t W, const T* x,
                                                                  const int64_t (&xs)[4], T* y,
                                                                  const int64_t (&ys)[4]) {
  StridedPixel<T, index_t> q;
  q.X = p % W;
  const index_t row = p / W;
  q.Y = row % H;
  q.b = row / H;
  q.in = x + q.b * xs[0] + q.Y * xs[2] + q.X * xs[3];
  q.out = y + q.b * ys[0] + q.Y * ys[2] + q.X * ys[3];
  return q;
}

// A result y in [0, 1] stored as T: integer images scaled by `scale` (255, 65535) and rounded half to even, like
// torch.round; floating-point images converted.
template <typename T, typename A>
__device__ __forceinline__ T store_value(A y, float scale) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(__float2int_rn(static_cast<float>(y) * scale));
  } else {
    return static_cast<T>(y);
  }
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t from_double(double v) {
  if constexpr (std::is_same_v<scalar_t, double>) {
    return v;
  } else {
    return static_cast<scalar_t>(static_cast<float>(v));
  }
}

// out = post * (scale0 * S0 + scale1 * S1), S_q the sum of column q of the (nblocks, 2) partials.
// One block in a fixed order, so the loss is bit-for-bit reproducible.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    finalize_loss_kernel(const double* __restrict__ partials, int64_t nblocks, double scale0, double scale1,
                         double post, scalar_t* __restrict__ out) {
  double s0 = 0.0, s1 = 0.0;
  for (int64_t b = threadIdx.x; b < nblocks; b += blockDim.x) {
    s0 += partials[2 * b];
    s1 += partials[2 * b + 1];
  }
  s0 = block_sum(s0);
  s1 = block_sum(s1);
  if (threadIdx.x == 0) out[0] = from_double<scalar_t>(post * (scale0 * s0 + scale1 * s1));
}

template <typename scalar_t>
void finalize_loss(const at::Tensor& partials, int64_t nblocks, double scale0, double scale1, double post,
                   at::Tensor& out, cudaStream_t stream) {
  finalize_loss_kernel<scalar_t><<<1, kThreads, 0, stream>>>(partials.data_ptr<double>(), nblocks, scale0,
                                                             scale1, post, out.data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// (nblocks, 2) float64 partial sums; at least one row so that data_ptr is valid for an empty input.
inline at::Tensor loss_partials(int64_t nblocks, const at::Tensor& like) {
  return at::empty({std::max<int64_t>(nblocks, 1), 2}, like.options().dtype(at::kDouble));
}

}  // namespace lowlight_cuda
