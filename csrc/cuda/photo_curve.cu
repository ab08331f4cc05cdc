// CUDA kernel of photo_curve: y = clamp(LE^n(x), 0, 1) on an image in its own dtype (uint8, uint16, float32,
// float64) and memory layout, one thread per pixel, read and written once through the image's own strides
// (an H x W x C photo is a channels_last tensor). Alpha is read at its own size and bilinearly interpolated in
// the kernel as in le_curve.cu (align_corners=False). Integers are scaled, and rounded to nearest even on
// output; gray images average the three RGB curves; alpha channels are copied. Math in float.
// photo_value_curve_kernel: the same for value-curve models (one curve per pixel on max(r, g, b), alpha with one
// channel per map, the gain v' / max(v, 1e-6) applied to every colour channel).
#include <torch/library.h>

#include <cstdint>

#include "common.cuh"

namespace lowlight_cuda {
namespace {

using lowlight::kMaxIterations;
constexpr int kCurveChannels = 3;  // RGB curve maps

struct PhotoArgs {
  int64_t B, C, H, W;
  int64_t xs[4], ys[4];  // strides of image and output (b, c, y, x)
  int h, w, k, n, color;
  int map_channels;      // alpha channels per map: 3 (photo_curve) or 1 (photo_value_curve)
  float scale;           // 255, 65535, or 0 for float images
  float scale_h, scale_w;  // h / H, w / W, as F.interpolate computes them
};

struct Tap {
  int i0, i1;
  float w0, w1;
};

// One axis of the bilinear resize with align_corners=False (as le_curve.cu).
__device__ __forceinline__ Tap tap(int dst, float scale, int in_size) {
  float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  src = src < 0.f ? 0.f : src;
  Tap t;
  t.i0 = min(static_cast<int>(src), in_size - 1);
  t.i1 = min(t.i0 + 1, in_size - 1);
  t.w1 = fminf(src - static_cast<float>(t.i0), 1.f);
  t.w0 = 1.f - t.w1;
  return t;
}

template <typename T>
__device__ __forceinline__ float load_value(const T* p, float scale) {
  const float v = static_cast<float>(*p);
  return scale > 0.f ? v / scale : fminf(fmaxf(v, 0.f), 1.f);
}

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    photo_curve_kernel(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ alpha, PhotoArgs a,
                       index_t total) {
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const auto [b, Y, X, xp, yp] = strided_pixel(p, a.H, a.W, x, a.xs, y, a.ys);
    const Tap ty = tap(static_cast<int>(Y), a.scale_h, a.h), tx = tap(static_cast<int>(X), a.scale_w, a.w);
    const int64_t plane = static_cast<int64_t>(a.h) * a.w;
    const int64_t o00 = static_cast<int64_t>(ty.i0) * a.w + tx.i0, o01 = static_cast<int64_t>(ty.i0) * a.w + tx.i1;
    const int64_t o10 = static_cast<int64_t>(ty.i1) * a.w + tx.i0, o11 = static_cast<int64_t>(ty.i1) * a.w + tx.i1;
    auto alpha_at = [&](int m, int q) {  // map m, RGB channel q, at this pixel
      const float* s = alpha + ((b * a.k + m) * a.map_channels + q) * plane;
      return ty.w0 * (tx.w0 * s[o00] + tx.w1 * s[o01]) + ty.w1 * (tx.w0 * s[o10] + tx.w1 * s[o11]);
    };
    auto curve = [&](float v, int q) {
      float am = 0.f;
      for (int step = 0; step < a.n; ++step) {
        if (step < a.k) am = alpha_at(step, q);
        v = v + am * v * (1.f - v);
      }
      return fminf(fmaxf(v, 0.f), 1.f);
    };
    if (a.color == 1) {  // gray: the mean of the three curves of the same value
      const float v = load_value(xp, a.scale);
      *yp = store_value<T>((curve(v, 0) + curve(v, 1) + curve(v, 2)) / 3.f, a.scale);
    } else {
      for (int c = 0; c < kCurveChannels; ++c)
        yp[c * a.ys[1]] = store_value<T>(curve(load_value(xp + c * a.xs[1], a.scale), c), a.scale);
    }
    for (int64_t c = a.color; c < a.C; ++c) yp[c * a.ys[1]] = xp[c * a.xs[1]];  // alpha channels
  }
}

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    photo_value_curve_kernel(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ alpha,
                             PhotoArgs a, index_t total) {
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const auto [b, Y, X, xp, yp] = strided_pixel(p, a.H, a.W, x, a.xs, y, a.ys);
    const Tap ty = tap(static_cast<int>(Y), a.scale_h, a.h), tx = tap(static_cast<int>(X), a.scale_w, a.w);
    const int64_t plane = static_cast<int64_t>(a.h) * a.w;
    const int64_t o00 = static_cast<int64_t>(ty.i0) * a.w + tx.i0, o01 = static_cast<int64_t>(ty.i0) * a.w + tx.i1;
    const int64_t o10 = static_cast<int64_t>(ty.i1) * a.w + tx.i0, o11 = static_cast<int64_t>(ty.i1) * a.w + tx.i1;
    float xs[kCurveChannels];
    float v = 0.f;
    for (int c = 0; c < a.color; ++c) {
      xs[c] = load_value(xp + c * a.xs[1], a.scale);
      v = c == 0 ? xs[c] : fmaxf(v, xs[c]);
    }
    float w = v, am = 0.f;
    for (int step = 0; step < a.n; ++step) {
      if (step < a.k) {
        const float* s = alpha + (b * a.k + step) * plane;
        am = ty.w0 * (tx.w0 * s[o00] + tx.w1 * s[o01]) + ty.w1 * (tx.w0 * s[o10] + tx.w1 * s[o11]);
      }
      w = w + am * w * (1.f - w);
    }
    const float gain = w / fmaxf(v, 1e-6f);
    for (int c = 0; c < a.color; ++c)
      yp[c * a.ys[1]] = store_value<T>(fminf(fmaxf(xs[c] * gain, 0.f), 1.f), a.scale);
    for (int64_t c = a.color; c < a.C; ++c) yp[c * a.ys[1]] = xp[c * a.xs[1]];  // alpha channels
  }
}

template <typename T, bool kValue>
void launch_photo(const at::Tensor& image, const at::Tensor& alpha, at::Tensor& out, PhotoArgs a,
                  cudaStream_t stream) {
  const int64_t total = a.B * a.H * a.W;  // pixel offsets are int64 (strides): index_t only counts pixels
  const T* x = image.const_data_ptr<T>();
  T* y = out.mutable_data_ptr<T>();
  const float* al = alpha.const_data_ptr<float>();
  if (fits_int32(total)) {
    const auto n = static_cast<int32_t>(total);
    if constexpr (kValue)
      photo_value_curve_kernel<T, int32_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, al, a, n);
    else
      photo_curve_kernel<T, int32_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, al, a, n);
  } else {
    if constexpr (kValue)
      photo_value_curve_kernel<T, int64_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, al, a, total);
    else
      photo_curve_kernel<T, int64_t><<<grid_for(total), kThreads, 0, stream>>>(x, y, al, a, total);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// photo_curve (value = false: alpha (B, 3k, h, w)) or photo_value_curve (alpha (B, k, h, w)).
template <bool kValue>
at::Tensor photo_cuda(const at::Tensor& image, const at::Tensor& alpha_in, int64_t iterations) {
  const char* op = kValue ? "photo_value_curve" : "photo_curve";
  const int map_channels = kValue ? 1 : kCurveChannels;
  TORCH_CHECK(image.is_cuda(), op, ": image must be a CUDA tensor, got one on ", image.device());
  TORCH_CHECK(image.dim() == 4, op, ": image must be 4-D (B, C, H, W), got ", image.dim(), "-D");
  TORCH_CHECK(alpha_in.dim() == 4, op, ": alpha must be 4-D (B, ", kValue ? "k" : "3*k", ", h, w), got ",
              alpha_in.dim(), "-D");
  const auto t = image.scalar_type();
  TORCH_CHECK(t == at::kByte || t == at::kUInt16 || t == at::kFloat || t == at::kDouble, op,
              ": image must be uint8, uint16, float32 or float64, got ", t);
  TORCH_CHECK(alpha_in.scalar_type() == at::kFloat, op, ": alpha must be float32, got ", alpha_in.scalar_type());
  TORCH_CHECK(alpha_in.device() == image.device(), op, ": alpha is on ", alpha_in.device(), " but image is on ",
              image.device());
  TORCH_CHECK(iterations >= 1 && iterations <= kMaxIterations, op, ": iterations must be in [1, ", kMaxIterations,
              "], got ", iterations);
  TORCH_CHECK(image.size(1) >= 1 && image.size(1) <= 4, op, ": image must have 1-4 channels, got ", image.size(1));
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1, op, ": image has an empty dimension: ", image.sizes());
  TORCH_CHECK(alpha_in.size(2) >= 1 && alpha_in.size(3) >= 1, op, ": alpha has an empty dimension: ",
              alpha_in.sizes());
  TORCH_CHECK(alpha_in.size(0) == image.size(0), op, ": alpha batch ", alpha_in.size(0), " != image batch ",
              image.size(0));
  TORCH_CHECK(alpha_in.size(1) >= map_channels && alpha_in.size(1) % map_channels == 0, op,
              kValue ? ": alpha must have k >= 1 channels (one map per step), got "
                     : ": alpha must have 3*k channels (RGB curve maps, k>=1), got ",
              alpha_in.size(1));
  const c10::cuda::CUDAGuard guard(image.device());
  at::Tensor out = at::empty_like(image);  // the fake kernel's rule: same dtype and memory layout
  if (out.numel() == 0) return out;
  const at::Tensor alpha = alpha_in.contiguous();
  PhotoArgs a;
  a.B = image.size(0), a.C = image.size(1), a.H = image.size(2), a.W = image.size(3);
  for (int d = 0; d < 4; ++d) a.xs[d] = image.stride(d), a.ys[d] = out.stride(d);
  a.h = static_cast<int>(alpha.size(2)), a.w = static_cast<int>(alpha.size(3));
  a.k = static_cast<int>(alpha.size(1) / map_channels), a.n = static_cast<int>(iterations);
  a.map_channels = map_channels;
  a.color = a.C <= 2 ? 1 : 3;
  a.scale = t == at::kByte ? 255.f : t == at::kUInt16 ? 65535.f : 0.f;
  a.scale_h = static_cast<float>(a.h) / static_cast<float>(a.H);
  a.scale_w = static_cast<float>(a.w) / static_cast<float>(a.W);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (t) {
    case at::kByte: launch_photo<uint8_t, kValue>(image, alpha, out, a, stream); break;
    case at::kUInt16: launch_photo<uint16_t, kValue>(image, alpha, out, a, stream); break;
    case at::kFloat: launch_photo<float, kValue>(image, alpha, out, a, stream); break;
    default: launch_photo<double, kValue>(image, alpha, out, a, stream); break;
  }
  return out;
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) {
  m.impl("photo_curve", &lowlight_cuda::photo_cuda<false>);
  m.impl("photo_value_curve", &lowlight_cuda::photo_cuda<true>);
}
