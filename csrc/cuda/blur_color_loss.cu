// CUDA kernels of blur_color_loss = mean((G * (x - y))^2) and its backward (2/N) G * (G * (x - y)), G the
// normalized separable Gaussian with zero padding ("same"). G is symmetric, so it is its own adjoint.
// The blur runs on 32 x 32 output tiles whose input (with halo) and horizontal pass live in shared memory;
// kernels too wide for that (large ksize) use two passes through a global buffer instead.
#include <torch/library.h>

#include <cmath>

#include "common.cuh"

namespace lowlight_cuda {
namespace {

constexpr int kMaxKsize = static_cast<int>(lowlight::kMaxKsize);
constexpr int kTile = 32;                       // output tile side; blocks are kTile x kTileRowsPerPass
constexpr int kTileRowsPerPass = kThreads / kTile;
constexpr size_t kMaxSharedBytes = 48 * 1024;   // no opt-in needed below this

// Gaussian weights as reference.gaussian_kernel1d: exp(-t^2 / (2 sigma^2)) in double, normalized, then cast.
template <typename acc_t>
__global__ void __launch_bounds__(kThreads) gaussian_weights_kernel(acc_t* __restrict__ out, int ksize,
                                                                    double sigma) {
  __shared__ double total;
  const int radius = ksize / 2;
  const double denom = 2.0 * sigma * sigma;
  double local = 0.0;
  for (int q = threadIdx.x; q < ksize; q += blockDim.x) {
    const double t = q - radius;
    local += exp(-(t * t) / denom);
  }
  local = block_sum(local);
  if (threadIdx.x == 0) total = local;
  __syncthreads();
  for (int q = threadIdx.x; q < ksize; q += blockDim.x) {
    const double t = q - radius;
    out[q] = static_cast<acc_t>(exp(-(t * t) / denom) / total);
  }
}

// What the blur reads: x - y, or a buffer in the math type.
template <typename scalar_t, typename acc_t>
struct DiffSource {
  const scalar_t* x;
  const scalar_t* y;
  __device__ __forceinline__ acc_t operator()(int64_t p) const {
    return static_cast<acc_t>(x[p]) - static_cast<acc_t>(y[p]);
  }
};

template <typename acc_t>
struct BufferSource {
  const acc_t* buf;
  __device__ __forceinline__ acc_t operator()(int64_t p) const { return buf[p]; }
};

// What the blur writes: per-block sums of squares (the loss), a buffer, or the scaled gradient.
// finish() is called once by every thread of the block at the end.
template <typename acc_t>
struct SumSquaresSink {
  double* partials;  // (gridDim.x, 2); column 1 unused (0)
  double sum;
  __device__ __forceinline__ void operator()(int64_t, acc_t v) { sum += static_cast<double>(v * v); }
  __device__ __forceinline__ void finish() {
    const double total = block_sum(sum);
    if (threadIdx.x == 0 && threadIdx.y == 0) {
      partials[2 * blockIdx.x] = total;
      partials[2 * blockIdx.x + 1] = 0.0;
    }
  }
};

template <typename acc_t>
struct BufferSink {
  acc_t* buf;
  __device__ __forceinline__ void operator()(int64_t p, acc_t v) { buf[p] = v; }
  __device__ __forceinline__ void finish() {}
};

template <typename scalar_t, typename acc_t>
struct GradSink {
  scalar_t* out;
  const scalar_t* grad;  // the incoming 0-d gradient, read on the device (no host sync)
  acc_t factor;          // 2 / N
  __device__ __forceinline__ void operator()(int64_t p, acc_t v) {
    out[p] = static_cast<scalar_t>(v * (factor * static_cast<acc_t>(grad[0])));
  }
  __device__ __forceinline__ void finish() {}
};

// Shared memory: weights, the input tile with a radius-wide halo, its horizontal blur.
template <typename acc_t>
size_t tiled_shared_bytes(int radius) {
  const size_t ksize = 2 * radius + 1, side = kTile + 2 * radius;
  return (ksize + side * side + side * kTile) * sizeof(acc_t);
}

template <typename acc_t, typename Source, typename Sink>
__global__ void __launch_bounds__(kThreads)
    blur_tiled_kernel(Source src, Sink sink_arg, const acc_t* __restrict__ weights, int radius, int64_t planes,
                      int H, int W, int tiles_w, int64_t tiles_per_plane) {
  Sink sink = sink_arg;  // per-thread state (running sums)
  extern __shared__ __align__(sizeof(double)) unsigned char smem_raw[];
  const int ksize = 2 * radius + 1;
  const int side = kTile + 2 * radius;  // input tile (with halo) is side x side
  acc_t* g = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* in = g + ksize;
  acc_t* rows_blurred = in + side * side;  // side x kTile

  const int tid = threadIdx.y * kTile + threadIdx.x;
  for (int q = tid; q < ksize; q += kThreads) g[q] = weights[q];

  const int64_t HW = static_cast<int64_t>(H) * W;
  const int64_t total_tiles = planes * tiles_per_plane;
  for (int64_t tile = blockIdx.x; tile < total_tiles; tile += gridDim.x) {
    const int64_t plane = tile / tiles_per_plane;
    const int64_t t = tile - plane * tiles_per_plane;
    const int i0 = static_cast<int>(t / tiles_w) * kTile;
    const int j0 = static_cast<int>(t % tiles_w) * kTile;
    const int64_t plane_off = plane * HW;

    for (int e = tid; e < side * side; e += kThreads) {
      const int r = e / side, c = e - r * side;
      const int gi = i0 - radius + r, gj = j0 - radius + c;
      in[e] = (gi >= 0 && gi < H && gj >= 0 && gj < W) ? src(plane_off + static_cast<int64_t>(gi) * W + gj)
                                                       : acc_t(0);
    }
    __syncthreads();  // also publishes g on the first tile
    for (int e = tid; e < side * kTile; e += kThreads) {
      const int r = e / kTile, c = e - r * kTile;
      const acc_t* row = in + r * side + c;
      acc_t v = acc_t(0);
      for (int q = 0; q < ksize; ++q) v += g[q] * row[q];
      rows_blurred[e] = v;
    }
    __syncthreads();
    for (int r = threadIdx.y; r < kTile; r += kTileRowsPerPass) {
      const int i = i0 + r, j = j0 + threadIdx.x;
      if (i < H && j < W) {
        const acc_t* col = rows_blurred + r * kTile + threadIdx.x;
        acc_t v = acc_t(0);
        for (int q = 0; q < ksize; ++q) v += g[q] * col[q * kTile];
        sink(plane_off + static_cast<int64_t>(i) * W + j, v);
      }
    }
    __syncthreads();  // the next tile overwrites `in` and `rows_blurred`
  }
  sink.finish();
}

// Fallback for wide kernels: horizontal pass into a buffer, then vertical pass. Taps outside the image are
// skipped (zero padding), which also keeps small images with huge kernels cheap.
template <typename acc_t, typename Source>
__global__ void __launch_bounds__(kThreads)
    blur_rows_kernel(Source src, acc_t* __restrict__ out, const acc_t* __restrict__ weights, int radius,
                     int64_t total, int W) {
  LOWLIGHT_GRID_STRIDE(int64_t, p, total) {
    const int j = static_cast<int>(p % W);
    const int q_lo = max(-radius, -j), q_hi = min(radius, W - 1 - j);
    acc_t v = acc_t(0);
    for (int q = q_lo; q <= q_hi; ++q) v += weights[q + radius] * src(p + q);
    out[p] = v;
  }
}

template <typename acc_t, typename Sink>
__global__ void __launch_bounds__(kThreads)
    blur_cols_kernel(const acc_t* __restrict__ in, Sink sink_arg, const acc_t* __restrict__ weights, int radius,
                     int64_t total, int H, int W) {
  Sink sink = sink_arg;  // per-thread state (running sums)
  LOWLIGHT_GRID_STRIDE(int64_t, p, total) {
    const int i = static_cast<int>((p / W) % H);
    const int q_lo = max(-radius, -i), q_hi = min(radius, H - 1 - i);
    acc_t v = acc_t(0);
    for (int q = q_lo; q <= q_hi; ++q) v += weights[q + radius] * in[p + static_cast<int64_t>(q) * W];
    sink(p, v);
  }
  sink.finish();
}

// ------------------------------------------------------------------------------------------ host side

struct BlurPlan {
  bool tiled;
  size_t smem;
  unsigned int blocks;
  int radius, H, W, tiles_w;
  int64_t planes, tiles_per_plane, total;
};

template <typename acc_t>
BlurPlan make_plan(const at::Tensor& x, int64_t ksize) {
  BlurPlan p;
  p.radius = static_cast<int>(ksize / 2);
  p.planes = x.size(0) * x.size(1);
  p.H = static_cast<int>(x.size(2));
  p.W = static_cast<int>(x.size(3));
  p.total = x.numel();
  p.smem = tiled_shared_bytes<acc_t>(p.radius);
  p.tiled = p.smem <= kMaxSharedBytes;
  p.tiles_w = static_cast<int>(ceil_div(p.W, kTile));
  p.tiles_per_plane = ceil_div(p.H, kTile) * p.tiles_w;
  p.blocks = p.tiled ? static_cast<unsigned int>(std::min(std::max<int64_t>(p.planes * p.tiles_per_plane, 1), kMaxBlocks))
                     : grid_for(p.total);
  return p;
}

// One blur of src into sink. `scratch` (total elements, math type) is used by the two-pass fallback only.
template <typename acc_t, typename Source, typename Sink>
void run_blur(const BlurPlan& p, Source src, Sink sink, const acc_t* weights, at::Tensor& scratch,
              cudaStream_t stream) {
  if (p.tiled) {
    blur_tiled_kernel<acc_t><<<p.blocks, dim3(kTile, kTileRowsPerPass), p.smem, stream>>>(
        src, sink, weights, p.radius, p.planes, p.H, p.W, p.tiles_w, p.tiles_per_plane);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  acc_t* buf = scratch.data_ptr<acc_t>();
  blur_rows_kernel<acc_t><<<p.blocks, kThreads, 0, stream>>>(src, buf, weights, p.radius, p.total, p.W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  blur_cols_kernel<acc_t><<<p.blocks, kThreads, 0, stream>>>(buf, sink, weights, p.radius, p.total, p.H, p.W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
at::Tensor gaussian_weights(double sigma, int64_t ksize, const at::Tensor& like, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  at::Tensor w = at::empty({ksize}, like.options().dtype(acc_scalar_type<scalar_t>()));
  gaussian_weights_kernel<acc_t><<<1, kThreads, 0, stream>>>(w.data_ptr<acc_t>(), static_cast<int>(ksize), sigma);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return w;
}

void check_blur_args(const char* op, const at::Tensor& x, const at::Tensor& y, double sigma, int64_t ksize) {
  check_cuda_image(op, "x", x);
  check_cuda_image(op, "y", y);
  check_same(op, "x", x, "y", y);
  TORCH_CHECK(x.sizes() == y.sizes(), op, ": x shape ", x.sizes(), " != y shape ", y.sizes());
  TORCH_CHECK(ksize >= 1 && ksize <= kMaxKsize && ksize % 2 == 1, op, ": ksize must be odd and in [1, ",
              kMaxKsize, "], got ", ksize);
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0.0, op, ": sigma must be a finite number > 0, got ", sigma);
}

at::Tensor blur_color_loss_cuda(const at::Tensor& x_in, const at::Tensor& y_in, double sigma, int64_t ksize) {
  check_blur_args("blur_color_loss", x_in, y_in, sigma, ksize);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  at::Tensor loss = at::empty({}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "blur_color_loss_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const BlurPlan plan = make_plan<acc_t>(x, ksize);
    const int64_t nblocks = plan.total > 0 ? plan.blocks : 0;
    const at::Tensor partials = loss_partials(nblocks, x);
    if (nblocks > 0) {
      const at::Tensor w = gaussian_weights<scalar_t>(sigma, ksize, x, stream);
      at::Tensor scratch = plan.tiled ? at::Tensor() : at::empty(x.sizes(), w.options());
      run_blur(plan, DiffSource<scalar_t, acc_t>{x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>()},
               SumSquaresSink<acc_t>{partials.data_ptr<double>(), 0.0}, w.data_ptr<acc_t>(), scratch, stream);
    }
    finalize_loss<scalar_t>(partials, nblocks, inv_or_inf(static_cast<double>(plan.total)), 0.0, 1.0, loss, stream);
  });
  return loss;
}

at::Tensor blur_color_loss_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& y_in,
                                         double sigma, int64_t ksize) {
  const char* op = "blur_color_loss_backward";
  check_blur_args(op, x_in, y_in, sigma, ksize);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor grad = checked_scalar_grad(op, grad_in, x_in);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return grad_x;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "blur_color_loss_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const BlurPlan plan = make_plan<acc_t>(x, ksize);
    const at::Tensor w = gaussian_weights<scalar_t>(sigma, ksize, x, stream);
    at::Tensor blurred = at::empty(x.sizes(), w.options());  // G * (x - y), the loss's inner term
    at::Tensor scratch = plan.tiled ? at::Tensor() : at::empty(x.sizes(), w.options());
    run_blur(plan, DiffSource<scalar_t, acc_t>{x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>()},
             BufferSink<acc_t>{blurred.data_ptr<acc_t>()}, w.data_ptr<acc_t>(), scratch, stream);
    const acc_t factor = static_cast<acc_t>(2.0 / static_cast<double>(plan.total));
    run_blur(plan, BufferSource<acc_t>{blurred.data_ptr<acc_t>()},
             GradSink<scalar_t, acc_t>{grad_x.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), factor},
             w.data_ptr<acc_t>(), scratch, stream);
  });
  return grad_x;
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) {
  m.impl("blur_color_loss", &lowlight_cuda::blur_color_loss_cuda);
  m.impl("blur_color_loss_backward", &lowlight_cuda::blur_color_loss_backward_cuda);
}
