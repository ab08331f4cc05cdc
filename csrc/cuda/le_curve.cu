// CUDA kernels of le_curve / le_curve_backward: y = LE^n(x), LE(x) = x + a * x * (1 - x), step s using
// alpha map min(s, k - 1). A low-resolution alpha is read at its own size and bilinearly interpolated in the
// kernel exactly like F.interpolate(mode="bilinear", align_corners=False); it is never materialized.
// Math in float for float16/bfloat16/float32, in double for float64 (gradcheck). The gradient of a resized
// alpha sums many pixels: with float atomics by default, in a fixed order (two gathers, bitwise repeatable)
// under torch.use_deterministic_algorithms(True).
#include <ATen/Context.h>
#include <torch/library.h>

#include <cmath>

#include "common.cuh"

namespace lowlight_cuda {
namespace {

constexpr int kMaxIterations = static_cast<int>(lowlight::kMaxIterations);
// Backward for a resized alpha works on 8 x 32 pixel tiles, one pixel per thread, so that a block can sum
// the adjoint of the resize over the few low-resolution cells its tile touches in shared memory.
constexpr int kTileH = 8;
constexpr int kTileW = 32;
static_assert(kTileH * kTileW == kThreads, "one thread per tile pixel");
constexpr size_t kMaxSharedBytes = 48 * 1024;  // no opt-in needed below this

template <typename acc_t>
struct LeShape {
  int C, H, W;      // x
  int h, w, k;      // alpha: (B, C * k, h, w)
  acc_t scale_h;    // h / H, as F.interpolate computes it (in the math type)
  acc_t scale_w;    // w / W
};

// One axis of bilinear resizing with align_corners=False: the source coordinate (dst + 0.5) * scale - 0.5 is
// clamped at 0, the second tap at the last input index.
template <typename acc_t>
struct Taps {
  int i0, i1;
  acc_t w0, w1;
};

template <typename acc_t>
__device__ __forceinline__ Taps<acc_t> linear_taps(int dst, acc_t scale, int in_size) {
  acc_t src = scale * (static_cast<acc_t>(dst) + acc_t(0.5)) - acc_t(0.5);
  src = src < acc_t(0) ? acc_t(0) : src;
  Taps<acc_t> t;
  t.i0 = min(static_cast<int>(src), in_size - 1);
  t.i1 = min(t.i0 + 1, in_size - 1);
  t.w1 = min(src - static_cast<acc_t>(t.i0), acc_t(1));
  t.w0 = acc_t(1) - t.w1;
  return t;
}

// The alpha value of one pixel for map m: maps of one (b, c) are map_stride = C * h * w elements apart.
template <typename scalar_t, typename acc_t, bool RESIZE>
struct AlphaAt {
  const scalar_t* base;  // alpha map 0 of this pixel's (b, c)
  int64_t map_stride;
  int64_t o00, o01, o10, o11;  // tap offsets in a map (only o00 without resizing)
  acc_t wy0, wy1, wx0, wx1;

  __device__ __forceinline__ acc_t operator()(int m) const {
    const scalar_t* a = base + m * map_stride;
    if constexpr (RESIZE) {
      return wy0 * (wx0 * static_cast<acc_t>(a[o00]) + wx1 * static_cast<acc_t>(a[o01])) +
             wy1 * (wx0 * static_cast<acc_t>(a[o10]) + wx1 * static_cast<acc_t>(a[o11]));
    } else {
      return static_cast<acc_t>(a[o00]);
    }
  }
};

// Offset of alpha map 0 of plane (b, c) = b * C + c: channel m * C + c of batch b.
template <typename acc_t>
__device__ __forceinline__ int64_t alpha_plane_offset(const LeShape<acc_t>& s, int64_t plane) {
  const int64_t b = plane / s.C, c = plane - b * s.C;
  return (b * s.k * s.C + c) * (static_cast<int64_t>(s.h) * s.w);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ AlphaAt<scalar_t, acc_t, true> resized_alpha(const scalar_t* base,
                                                                       const LeShape<acc_t>& s,
                                                                       const Taps<acc_t>& ty,
                                                                       const Taps<acc_t>& tx) {
  AlphaAt<scalar_t, acc_t, true> a;
  a.base = base;
  a.map_stride = static_cast<int64_t>(s.C) * s.h * s.w;
  a.o00 = static_cast<int64_t>(ty.i0) * s.w + tx.i0;
  a.o01 = static_cast<int64_t>(ty.i0) * s.w + tx.i1;
  a.o10 = static_cast<int64_t>(ty.i1) * s.w + tx.i0;
  a.o11 = static_cast<int64_t>(ty.i1) * s.w + tx.i1;
  a.wy0 = ty.w0;
  a.wy1 = ty.w1;
  a.wx0 = tx.w0;
  a.wx1 = tx.w1;
  return a;
}

template <typename scalar_t, typename acc_t, bool RESIZE>
__device__ __forceinline__ AlphaAt<scalar_t, acc_t, RESIZE> alpha_at_pixel(const scalar_t* alpha,
                                                                          const LeShape<acc_t>& s,
                                                                          int64_t plane, int i, int j) {
  const scalar_t* base = alpha + alpha_plane_offset(s, plane);
  if constexpr (RESIZE) {
    return resized_alpha(base, s, linear_taps(i, s.scale_h, s.h), linear_taps(j, s.scale_w, s.w));
  } else {
    AlphaAt<scalar_t, acc_t, false> a;
    a.base = base;
    a.map_stride = static_cast<int64_t>(s.C) * s.h * s.w;
    a.o00 = static_cast<int64_t>(i) * s.w + j;
    return a;
  }
}

// Gradient of one pixel's n steps. The iterates x_s are recomputed into a local array; walking the steps
// backwards, g = dy/dx_{s+1} gives dy/da_s = g * x_s (1 - x_s) and dy/dx_s = g * (1 + a_s (1 - 2 x_s)).
// Steps sharing map min(s, k - 1) are summed, and emit(m, grad) is called once for each map
// m = min(n, k) - 1, ..., 0. Returns dy/dx_0 * grad_y.
template <typename acc_t, typename AlphaAtT, typename Emit>
__device__ __forceinline__ acc_t le_pixel_backward(acc_t x0, acc_t grad_y, int n, int k, const AlphaAtT& alpha_at,
                                                   Emit&& emit) {
  acc_t xs[kMaxIterations];
  acc_t v = x0, a = acc_t(0);
  for (int s = 0; s < n; ++s) {
    if (s < k) a = alpha_at(s);
    xs[s] = v;
    v = v + a * v * (acc_t(1) - v);
  }
  // `a` now holds map min(n - 1, k - 1), the one of the last step; going down it changes while s < k - 1.
  acc_t g = grad_y, grad_map = acc_t(0);
  for (int s = n - 1; s >= 0; --s) {
    if (s < k - 1) a = alpha_at(s);
    const acc_t xv = xs[s];
    grad_map += g * xv * (acc_t(1) - xv);
    g = g * (acc_t(1) + a * (acc_t(1) - acc_t(2) * xv));
    if (s < k) {  // step s - 1 uses another map (or there is none)
      emit(s, grad_map);
      grad_map = acc_t(0);
    }
  }
  return g;
}

// First index in [0, n) where pred, false then true along the indices, is true (n where it never is).
template <typename Pred>
__device__ __forceinline__ int first_where(int n, Pred pred) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (pred(mid)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// The alpha lookup of element p of x, flattened as (plane = b * C + c, i, j) over B * C planes of H x W.
template <typename scalar_t, typename acc_t, bool RESIZE, typename index_t>
__device__ __forceinline__ auto alpha_at_flat_index(const scalar_t* alpha, const LeShape<acc_t>& s, index_t p) {
  const index_t row = p / s.W;
  return alpha_at_pixel<scalar_t, acc_t, RESIZE>(alpha, s, row / s.H, static_cast<int>(row % s.H),
                                                 static_cast<int>(p % s.W));
}

// ------------------------------------------------------------------------------------------ kernels

template <typename scalar_t, typename index_t, bool RESIZE>
__global__ void __launch_bounds__(kThreads)
    le_curve_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ alpha,
                            scalar_t* __restrict__ y, index_t total, LeShape<at::opmath_type<scalar_t>> s,
                            int n) {
  using acc_t = at::opmath_type<scalar_t>;
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const auto alpha_at = alpha_at_flat_index<scalar_t, acc_t, RESIZE>(alpha, s, p);
    acc_t v = static_cast<acc_t>(x[p]), a = acc_t(0);
    for (int step = 0; step < n; ++step) {
      if (step < s.k) a = alpha_at(step);
      v = v + a * v * (acc_t(1) - v);
    }
    y[p] = static_cast<scalar_t>(v);
  }
}

// Alpha at x's resolution: each pixel owns its k alpha values, so grad_alpha is written directly
// (zeros for maps no step uses, when k > n).
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    le_curve_backward_fullres_kernel(const scalar_t* __restrict__ grad_y, const scalar_t* __restrict__ x,
                                     const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_x,
                                     scalar_t* __restrict__ grad_alpha, index_t total,
                                     LeShape<at::opmath_type<scalar_t>> s, int n) {
  using acc_t = at::opmath_type<scalar_t>;
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const auto alpha_at = alpha_at_flat_index<scalar_t, acc_t, false>(alpha, s, p);
    scalar_t* ga = grad_alpha + (alpha_at.base - alpha) + alpha_at.o00;
    const acc_t gx = le_pixel_backward(static_cast<acc_t>(x[p]), static_cast<acc_t>(grad_y[p]), n, s.k, alpha_at,
                                       [&](int m, acc_t g) { ga[m * alpha_at.map_stride] = static_cast<scalar_t>(g); });
    for (int m = n; m < s.k; ++m) ga[m * alpha_at.map_stride] = scalar_t(0);
    grad_x[p] = static_cast<scalar_t>(gx);
  }
}

// Resized alpha: grad_alpha is the adjoint of the bilinear resize, a sum over many pixels. Each block sums
// its tile's contributions in shared memory over the tile's footprint in alpha (rows r_base.., columns
// c_base.., all maps in use) and adds them to `grad_alpha` (zero-initialized, math type) with one atomic
// per cell. A tile whose footprint does not fit `smem_capacity` elements (alpha much larger than x) adds
// each contribution atomically in global memory instead.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    le_curve_backward_resized_kernel(const scalar_t* __restrict__ grad_y, const scalar_t* __restrict__ x,
                                     const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_x,
                                     at::opmath_type<scalar_t>* __restrict__ grad_alpha,
                                     LeShape<at::opmath_type<scalar_t>> s, int n, int64_t planes, int tiles_w,
                                     int64_t tiles_per_plane, int64_t smem_capacity) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(sizeof(double)) unsigned char smem_raw[];
  acc_t* tile_grad = reinterpret_cast<acc_t*>(smem_raw);

  const int tid = threadIdx.x;
  const int nmaps = min(n, s.k);
  const int64_t HW = static_cast<int64_t>(s.H) * s.W;
  const int64_t map_stride = static_cast<int64_t>(s.C) * s.h * s.w;
  const int64_t total_tiles = planes * tiles_per_plane;

  for (int64_t tile = blockIdx.x; tile < total_tiles; tile += gridDim.x) {
    const int64_t plane = tile / tiles_per_plane;
    const int64_t t = tile - plane * tiles_per_plane;
    const int i_first = static_cast<int>(t / tiles_w) * kTileH;
    const int j_first = static_cast<int>(t % tiles_w) * kTileW;
    const int i_last = min(i_first + kTileH, s.H) - 1;
    const int j_last = min(j_first + kTileW, s.W) - 1;
    // Taps are monotonic in the destination index, so the tile's first and last pixels bound its footprint.
    const int r_base = linear_taps(i_first, s.scale_h, s.h).i0;
    const int c_base = linear_taps(j_first, s.scale_w, s.w).i0;
    const int rows = linear_taps(i_last, s.scale_h, s.h).i1 - r_base + 1;
    const int cols = linear_taps(j_last, s.scale_w, s.w).i1 - c_base + 1;
    const int64_t footprint = static_cast<int64_t>(nmaps) * rows * cols;
    const bool in_shared = footprint <= smem_capacity;  // the same for the whole block
    const int64_t alpha_off = alpha_plane_offset(s, plane);

    if (in_shared) {
      for (int64_t e = tid; e < footprint; e += blockDim.x) tile_grad[e] = acc_t(0);
    }
    __syncthreads();

    const int i = i_first + tid / kTileW;
    const int j = j_first + tid % kTileW;
    if (i < s.H && j < s.W) {
      const int64_t p = plane * HW + static_cast<int64_t>(i) * s.W + j;
      const Taps<acc_t> ty = linear_taps(i, s.scale_h, s.h);
      const Taps<acc_t> tx = linear_taps(j, s.scale_w, s.w);
      const auto alpha_at = resized_alpha(alpha + alpha_off, s, ty, tx);
      const acc_t gx = le_pixel_backward(
          static_cast<acc_t>(x[p]), static_cast<acc_t>(grad_y[p]), n, s.k, alpha_at, [&](int m, acc_t g) {
            const acc_t g0 = g * ty.w0, g1 = g * ty.w1;
            const int r0 = ty.i0 - r_base, r1 = ty.i1 - r_base, c0 = tx.i0 - c_base, c1 = tx.i1 - c_base;
            // Always true in exact arithmetic; checked so that no rounding can index outside the footprint.
            if (in_shared && r0 >= 0 && r1 < rows && c0 >= 0 && c1 < cols) {
              acc_t* cell = tile_grad + static_cast<int64_t>(m) * rows * cols;
              atomicAdd(cell + r0 * cols + c0, g0 * tx.w0);
              atomicAdd(cell + r0 * cols + c1, g0 * tx.w1);
              atomicAdd(cell + r1 * cols + c0, g1 * tx.w0);
              atomicAdd(cell + r1 * cols + c1, g1 * tx.w1);
            } else {
              acc_t* map = grad_alpha + alpha_off + m * map_stride;
              atomicAdd(map + alpha_at.o00, g0 * tx.w0);
              atomicAdd(map + alpha_at.o01, g0 * tx.w1);
              atomicAdd(map + alpha_at.o10, g1 * tx.w0);
              atomicAdd(map + alpha_at.o11, g1 * tx.w1);
            }
          });
      grad_x[p] = static_cast<scalar_t>(gx);
    }
    __syncthreads();

    if (in_shared) {
      const int64_t cells = static_cast<int64_t>(rows) * cols;
      for (int64_t e = tid; e < footprint; e += blockDim.x) {
        const acc_t v = tile_grad[e];
        if (v == acc_t(0)) continue;
        const int64_t m = e / cells;
        const int64_t rc = e - m * cells;
        const int64_t r = rc / cols, c = rc - r * cols;
        atomicAdd(grad_alpha + alpha_off + m * map_stride + (r_base + r) * s.w + (c_base + c), v);
      }
    }
    __syncthreads();  // the next tile re-zeroes tile_grad
  }
}

// Deterministic backward for a resized alpha: the adjoint of the resize as two gathers, each sum taken by one
// thread in a fixed order (no atomics). Both use linear_taps, whose source indices never decrease along x, so
// the x columns (rows) that touch an alpha column (row) are one range, found by binary search.
// Pass 1, one thread per (plane, row i of x, alpha column c): the backward of the pixels (i, j) whose left
// tap is c (so each pixel has one thread, which writes its grad_x); per map, their gradients times the
// horizontal tap weights go to row_sums[plane][map][i][c][0] (tap c) and [1] (tap c + 1; the clamped last
// column's second tap is c itself and goes to [0]).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    le_curve_backward_rows_kernel(const scalar_t* __restrict__ grad_y, const scalar_t* __restrict__ x,
                                  const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_x,
                                  at::opmath_type<scalar_t>* __restrict__ row_sums,
                                  LeShape<at::opmath_type<scalar_t>> s, int n, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int nmaps = min(n, s.k);
  LOWLIGHT_GRID_STRIDE(int64_t, t, total) {  // t = (plane * H + i) * w + c
    const int c = static_cast<int>(t % s.w);
    const int64_t row = t / s.w;  // plane * H + i
    const int i = static_cast<int>(row % s.H);
    const int64_t plane = row / s.H;
    const int j_begin = first_where(s.W, [&](int j) { return linear_taps(j, s.scale_w, s.w).i0 >= c; });
    const int j_end = first_where(s.W, [&](int j) { return linear_taps(j, s.scale_w, s.w).i0 > c; });
    acc_t own[kMaxIterations], next[kMaxIterations];
    for (int m = 0; m < nmaps; ++m) own[m] = next[m] = acc_t(0);
    const Taps<acc_t> ty = linear_taps(i, s.scale_h, s.h);
    const scalar_t* base = alpha + alpha_plane_offset(s, plane);
    for (int j = j_begin; j < j_end; ++j) {
      const Taps<acc_t> tx = linear_taps(j, s.scale_w, s.w);
      const int64_t p = row * s.W + j;
      const acc_t gx = le_pixel_backward(static_cast<acc_t>(x[p]), static_cast<acc_t>(grad_y[p]), n, s.k,
                                         resized_alpha(base, s, ty, tx), [&](int m, acc_t g) {
                                           own[m] += g * tx.w0;
                                           (tx.i1 == c ? own : next)[m] += g * tx.w1;
                                         });
      grad_x[p] = static_cast<scalar_t>(gx);
    }
    for (int m = 0; m < nmaps; ++m) {
      acc_t* out = row_sums + 2 * (((plane * nmaps + m) * s.H + i) * s.w + c);
      out[0] = own[m];
      out[1] = next[m];
    }
  }
}

// Pass 2, one thread per used alpha cell (plane, map m, row r, column c): the sum, over the rows i of x whose
// vertical taps include r in increasing i, of column c's pass-1 sum (its own part plus column c - 1's
// second-tap part) times the tap weight. Writes grad_alpha (math type, zeros for maps no step uses).
template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    le_curve_backward_cols_kernel(const acc_t* __restrict__ row_sums, acc_t* __restrict__ grad_alpha,
                                  LeShape<acc_t> s, int nmaps, int64_t total) {
  const int64_t map_stride = static_cast<int64_t>(s.C) * s.h * s.w;
  LOWLIGHT_GRID_STRIDE(int64_t, t, total) {  // t = ((plane * nmaps + m) * h + r) * w + c
    const int c = static_cast<int>(t % s.w);
    const int r = static_cast<int>((t / s.w) % s.h);
    const int64_t plane_map = t / (static_cast<int64_t>(s.h) * s.w);
    const int m = static_cast<int>(plane_map % nmaps);
    const int64_t plane = plane_map / nmaps;
    const int i_begin = first_where(s.H, [&](int i) { return linear_taps(i, s.scale_h, s.h).i1 >= r; });
    const int i_end = first_where(s.H, [&](int i) { return linear_taps(i, s.scale_h, s.h).i0 > r; });
    const acc_t* sums = row_sums + 2 * plane_map * s.H * s.w;
    acc_t total_grad = acc_t(0);
    for (int i = i_begin; i < i_end; ++i) {
      const Taps<acc_t> ty = linear_taps(i, s.scale_h, s.h);
      const acc_t* cells = sums + 2 * static_cast<int64_t>(i) * s.w;
      const acc_t column = c > 0 ? cells[2 * c] + cells[2 * c - 1] : cells[0];
      if (ty.i0 == r) total_grad += column * ty.w0;
      if (ty.i1 == r) total_grad += column * ty.w1;
    }
    grad_alpha[alpha_plane_offset(s, plane) + m * map_stride + static_cast<int64_t>(r) * s.w + c] = total_grad;
  }
}

// ------------------------------------------------------------------------------------------ host side

void check_le_curve_args(const char* op, const at::Tensor& x, const at::Tensor& alpha, int64_t iterations) {
  check_cuda_image(op, "x", x);
  check_cuda_image(op, "alpha", alpha);
  check_same(op, "x", x, "alpha", alpha);
  TORCH_CHECK(iterations >= 1 && iterations <= kMaxIterations, op, ": iterations must be in [1, ", kMaxIterations,
              "], got ", iterations);
  TORCH_CHECK(alpha.size(0) == x.size(0), op, ": alpha batch ", alpha.size(0), " != x batch ", x.size(0));
  TORCH_CHECK(alpha.size(1) % x.size(1) == 0, op, ": alpha must have C*k channels (C=", x.size(1),
              ", k>=1), got ", alpha.size(1));
}

template <typename acc_t>
LeShape<acc_t> le_shape(const at::Tensor& x, const at::Tensor& alpha) {
  LeShape<acc_t> s;
  s.C = static_cast<int>(x.size(1));
  s.H = static_cast<int>(x.size(2));
  s.W = static_cast<int>(x.size(3));
  s.h = static_cast<int>(alpha.size(2));
  s.w = static_cast<int>(alpha.size(3));
  s.k = static_cast<int>(alpha.size(1) / x.size(1));
  // F.interpolate's area_pixel_compute_scale: input_size / output_size in the math type.
  s.scale_h = static_cast<acc_t>(s.h) / static_cast<acc_t>(s.H);
  s.scale_w = static_cast<acc_t>(s.w) / static_cast<acc_t>(s.W);
  return s;
}

bool needs_resize(const at::Tensor& x, const at::Tensor& alpha) {
  return alpha.size(2) != x.size(2) || alpha.size(3) != x.size(3);
}

template <typename scalar_t, typename index_t>
void launch_forward(const at::Tensor& x, const at::Tensor& alpha, at::Tensor& y, int n, bool resize,
                    cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto s = le_shape<acc_t>(x, alpha);
  const index_t total = static_cast<index_t>(x.numel());
  const unsigned int blocks = grid_for(x.numel());
  auto kernel = resize ? le_curve_forward_kernel<scalar_t, index_t, true>
                       : le_curve_forward_kernel<scalar_t, index_t, false>;
  kernel<<<blocks, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(),
                                          y.data_ptr<scalar_t>(), total, s, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor le_curve_cuda(const at::Tensor& x_in, const at::Tensor& alpha_in, int64_t iterations) {
  check_le_curve_args("le_curve", x_in, alpha_in, iterations);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), alpha = alpha_in.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int n = static_cast<int>(iterations);
  const bool resize = needs_resize(x, alpha);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "le_curve_cuda", [&] {
    if (fits_int32(x.numel())) {
      launch_forward<scalar_t, int32_t>(x, alpha, y, n, resize, stream);
    } else {
      launch_forward<scalar_t, int64_t>(x, alpha, y, n, resize, stream);
    }
  });
  return y;
}

template <typename scalar_t, typename index_t>
void launch_backward_fullres(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& alpha,
                             at::Tensor& grad_x, at::Tensor& grad_alpha, int n, cudaStream_t stream) {
  const auto s = le_shape<at::opmath_type<scalar_t>>(x, alpha);
  le_curve_backward_fullres_kernel<scalar_t, index_t><<<grid_for(x.numel()), kThreads, 0, stream>>>(
      grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
      grad_alpha.data_ptr<scalar_t>(), static_cast<index_t>(x.numel()), s, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Returns grad_alpha in the math type (float or double).
template <typename scalar_t>
at::Tensor launch_backward_resized(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& alpha,
                                   at::Tensor& grad_x, int n, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto s = le_shape<acc_t>(x, alpha);
  at::Tensor grad_alpha = at::zeros(alpha.sizes(), alpha.options().dtype(acc_scalar_type<scalar_t>()));
  const int64_t planes = x.size(0) * s.C;
  const int tiles_w = static_cast<int>(ceil_div(s.W, kTileW));
  const int64_t tiles_per_plane = ceil_div(s.H, kTileH) * tiles_w;
  // Footprint bound of a tile: rows <= (kTileH - 1) * h / H + 3 (two taps, floor of both ends), same for
  // columns. The kernel checks each tile's real footprint, so this only sizes the buffer.
  const int64_t rows = static_cast<int64_t>(std::ceil(double(kTileH - 1) * s.h / s.H)) + 3;
  const int64_t cols = static_cast<int64_t>(std::ceil(double(kTileW - 1) * s.w / s.W)) + 3;
  int64_t capacity = std::min<int64_t>(n, s.k) * rows * cols;
  if (capacity * static_cast<int64_t>(sizeof(acc_t)) > static_cast<int64_t>(kMaxSharedBytes)) capacity = 0;
  const size_t smem = static_cast<size_t>(capacity) * sizeof(acc_t);
  const unsigned int blocks = static_cast<unsigned int>(std::min(planes * tiles_per_plane, kMaxBlocks));
  le_curve_backward_resized_kernel<scalar_t><<<blocks, kThreads, smem, stream>>>(
      grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
      grad_alpha.data_ptr<acc_t>(), s, n, planes, tiles_w, tiles_per_plane, capacity);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_alpha;
}

// The same in a fixed order (torch.use_deterministic_algorithms(True)); keeps planes * min(n, k) * H * w
// partial sums (two per cell) in the math type.
template <typename scalar_t>
at::Tensor launch_backward_resized_deterministic(const at::Tensor& grad_y, const at::Tensor& x,
                                                 const at::Tensor& alpha, at::Tensor& grad_x, int n,
                                                 cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto s = le_shape<acc_t>(x, alpha);
  const auto acc_options = alpha.options().dtype(acc_scalar_type<scalar_t>());
  const int64_t nmaps = std::min<int64_t>(n, s.k), planes = x.size(0) * s.C;
  at::Tensor row_sums = at::empty({planes, nmaps, s.H, s.w, 2}, acc_options);
  at::Tensor grad_alpha = at::zeros(alpha.sizes(), acc_options);
  const int64_t rows = planes * s.H * s.w, cells = planes * nmaps * s.h * s.w;
  le_curve_backward_rows_kernel<scalar_t><<<grid_for(rows), kThreads, 0, stream>>>(
      grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
      row_sums.data_ptr<acc_t>(), s, n, rows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  le_curve_backward_cols_kernel<acc_t><<<grid_for(cells), kThreads, 0, stream>>>(
      row_sums.data_ptr<acc_t>(), grad_alpha.data_ptr<acc_t>(), s, static_cast<int>(nmaps), cells);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_alpha;
}

std::tuple<at::Tensor, at::Tensor> le_curve_backward_cuda(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                          const at::Tensor& alpha_in, int64_t iterations) {
  const char* op = "le_curve_backward";
  check_le_curve_args(op, x_in, alpha_in, iterations);
  check_same(op, "grad_y", grad_y_in, "x", x_in);
  TORCH_CHECK(grad_y_in.sizes() == x_in.sizes(), op, ": grad_y shape ", grad_y_in.sizes(), " != x shape ",
              x_in.sizes());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor grad_y = grad_y_in.contiguous(), x = x_in.contiguous(), alpha = alpha_in.contiguous();
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return {grad_x, at::zeros(alpha.sizes(), alpha.options())};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int n = static_cast<int>(iterations);
  at::Tensor grad_alpha;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "le_curve_backward_cuda", [&] {
    if (needs_resize(x, alpha)) {
      // The atomics' order changes from run to run; under deterministic mode the fixed-order (slower) path runs.
      const bool fixed_order = at::globalContext().deterministicAlgorithms();
      grad_alpha = (fixed_order ? launch_backward_resized_deterministic<scalar_t>(grad_y, x, alpha, grad_x, n, stream)
                                : launch_backward_resized<scalar_t>(grad_y, x, alpha, grad_x, n, stream))
                       .to(alpha.scalar_type());
    } else {
      grad_alpha = at::empty(alpha.sizes(), alpha.options());
      if (fits_int32(x.numel())) {
        launch_backward_fullres<scalar_t, int32_t>(grad_y, x, alpha, grad_x, grad_alpha, n, stream);
      } else {
        launch_backward_fullres<scalar_t, int64_t>(grad_y, x, alpha, grad_x, grad_alpha, n, stream);
      }
    }
  });
  return {grad_x, grad_alpha};
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) {
  m.impl("le_curve", &lowlight_cuda::le_curve_cuda);
  m.impl("le_curve_backward", &lowlight_cuda::le_curve_backward_cuda);
}
