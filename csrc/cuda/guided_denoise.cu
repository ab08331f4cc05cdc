// CUDA kernel of lowlight::guided_denoise (spec: lowlight_core/reference.py guided_denoise; CPU twin:
// csrc/cpu/guided_denoise.cpp). Storage float16/bfloat16/float32/float64, math in float (double for
// float64) with double running sums.
//
// Plane by plane (luminance, then the chroma planes p = x_c - L of an RGB image), for every image of the batch:
//   quantities  luma q (4, H, W): L, L^2, L_out, L_in; chroma q (6, H, W): p, L' p, L', L'^2, L_out, L_in
//               (L' the denoised luminance, read from the plane's own output channel)  (one thread per pixel)
//   box         vertical running sums (one thread per column: coalesced), then horizontal running sums
//               (one thread per row): window means of every quantity, cost independent of the radius
//   ab          luma a = var / (var + eps), b = m - a m; chroma A = cov(L', p) / (var(L') + eps),
//               B = m_p - A m_L'                                   (one thread per pixel)
//   box         of a and b, then out: luma writes L' to every channel; chroma adds
//               p + share (mean(A) L' + mean(B) - p) to its channel and clamps.
// Compile-checked here (no GPU on the build machine); the CPU kernel is the one tested against the reference.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common.cuh"

namespace lowlight_cuda {
namespace {

constexpr int kLuma = -1;

template <typename T, typename M>
__device__ __forceinline__ void plane_value(const T* __restrict__ x, const T* __restrict__ g, int C, int64_t HW,
                                            int64_t i, int kind, M& p, M& lo, M& li) {
  if (C == 1) {
    lo = static_cast<M>(x[i]);
    li = static_cast<M>(g[i]);
  } else {
    lo = (static_cast<M>(x[i]) + static_cast<M>(x[i + HW]) + static_cast<M>(x[i + 2 * HW])) / M(3);
    li = (static_cast<M>(g[i]) + static_cast<M>(g[i + HW]) + static_cast<M>(g[i + 2 * HW])) / M(3);
  }
  p = kind == kLuma ? lo : static_cast<M>(x[i + kind * HW]) - lo;
}

template <typename T, typename M>
__global__ void quantities_kernel(const T* __restrict__ x, const T* __restrict__ g, int C, int64_t HW, int kind,
                                  M* __restrict__ q) {
  LOWLIGHT_GRID_STRIDE(int64_t, i, HW) {
    M p, lo, li;
    plane_value(x, g, C, HW, i, kind, p, lo, li);
    q[i] = p;
    q[i + HW] = p * p;
    q[i + 2 * HW] = lo;
    q[i + 3 * HW] = li;
  }
}

// Chroma plane `kind`: p, L' p, L', L'^2, L_out, L_in (L' from out's channel `kind`, which holds it until this
// plane is added).
template <typename T, typename M>
__global__ void chroma_quantities_kernel(const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ out,
                                         int64_t HW, int kind, M* __restrict__ q) {
  LOWLIGHT_GRID_STRIDE(int64_t, i, HW) {
    M p, lo, li;
    plane_value(x, g, 3, HW, i, kind, p, lo, li);
    const M l = static_cast<M>(out[i + kind * HW]);
    q[i] = p;
    q[i + HW] = l * p;
    q[i + 2 * HW] = l;
    q[i + 3 * HW] = l * l;
    q[i + 4 * HW] = lo;
    q[i + 5 * HW] = li;
  }
}

// Vertical window means of nq planes (nq, H, W) in place into v: one thread per (plane, column).
template <typename M>
__global__ void box_vertical_kernel(const M* __restrict__ in, M* __restrict__ v, int nq, int64_t H, int64_t W,
                                    int64_t r) {
  LOWLIGHT_GRID_STRIDE(int64_t, t, nq * W) {
    const int64_t k = t / W, X = t % W;
    const M* col = in + k * H * W + X;
    M* out = v + k * H * W + X;
    double s = 0.0;
    for (int64_t Y = 0; Y <= min(r, H - 1); ++Y) s += static_cast<double>(col[Y * W]);
    for (int64_t Y = 0; Y < H; ++Y) {
      if (Y > 0) {
        if (Y + r < H) s += static_cast<double>(col[(Y + r) * W]);
        if (Y - r - 1 >= 0) s -= static_cast<double>(col[(Y - r - 1) * W]);
      }
      const int64_t n = min(Y + r, H - 1) - max(Y - r, int64_t(0)) + 1;
      out[Y * W] = static_cast<M>(s / static_cast<double>(n));
    }
  }
}

// Horizontal window means of nq planes: one thread per (plane, row).
template <typename M>
__global__ void box_horizontal_kernel(const M* __restrict__ in, M* __restrict__ h, int nq, int64_t H, int64_t W,
                                      int64_t r) {
  LOWLIGHT_GRID_STRIDE(int64_t, t, nq * H) {
    const M* row = in + t * W;
    M* out = h + t * W;
    double s = 0.0;
    for (int64_t X = 0; X <= min(r, W - 1); ++X) s += static_cast<double>(row[X]);
    for (int64_t X = 0; X < W; ++X) {
      if (X > 0) {
        if (X + r < W) s += static_cast<double>(row[X + r]);
        if (X - r - 1 >= 0) s -= static_cast<double>(row[X - r - 1]);
      }
      const int64_t n = min(X + r, W - 1) - max(X - r, int64_t(0)) + 1;
      out[X] = static_cast<M>(s / static_cast<double>(n));
    }
  }
}

template <typename M>
__global__ void ab_kernel(const M* __restrict__ mean, int64_t HW, double weight, double na, double nb,
                          M* __restrict__ ab) {
  LOWLIGHT_GRID_STRIDE(int64_t, i, HW) {
    const double m = mean[i], mm = mean[i + HW], mo = mean[i + 2 * HW], mi = mean[i + 3 * HW];
    const double var = fmax(mm - m * m, 0.0);
    const double gain = mo / fmax(mi, lowlight::kDenoiseGainFloor);
    const double eps = weight * gain * gain * fmax(na * mi + nb, 0.0);
    const double a = eps > 0 ? var / (var + eps) : 1.0;
    ab[i] = static_cast<M>(a);
    ab[i + HW] = static_cast<M>(m - a * m);
  }
}

template <typename M>
__global__ void chroma_ab_kernel(const M* __restrict__ mean, int64_t HW, double weight, double na, double nb,
                                 M* __restrict__ ab) {
  LOWLIGHT_GRID_STRIDE(int64_t, i, HW) {
    const double mp = mean[i], mgp = mean[i + HW], mg = mean[i + 2 * HW], mgg = mean[i + 3 * HW];
    const double mo = mean[i + 4 * HW], mi = mean[i + 5 * HW];
    const double var = fmax(mgg - mg * mg, 0.0), cov = mgp - mg * mp;
    const double gain = mo / fmax(mi, lowlight::kDenoiseGainFloor);
    const double eps = weight * gain * gain * fmax(na * mi + nb, 0.0) + lowlight::kDenoiseEpsFloor;
    const double a = cov / (var + eps);
    ab[i] = static_cast<M>(a);
    ab[i + HW] = static_cast<M>(mp - a * mg);
  }
}

// identity: the plane passed through (mean(a) = 1, mean(b) = 0, mab unused).
template <typename T, typename M>
__global__ void out_kernel(const T* __restrict__ x, const T* __restrict__ g, int C, int64_t HW, int kind,
                           const M* __restrict__ mab, bool identity, bool clamp_now, M share,
                           T* __restrict__ out) {
  LOWLIGHT_GRID_STRIDE(int64_t, i, HW) {
    M p, lo, li;
    plane_value(x, g, C, HW, i, kind, p, lo, li);
    if (kind == kLuma) {
      const M v = identity ? p : mab[i] * p + mab[i + HW];
      const M w = clamp_now ? min(max(v, M(0)), M(1)) : v;
      for (int c = 0; c < C; ++c) out[i + c * HW] = static_cast<T>(w);
    } else {
      const M l = static_cast<M>(out[i + kind * HW]);
      const M v = identity ? p : p + share * (mab[i] * l + mab[i + HW] - p);
      out[i + kind * HW] = static_cast<T>(min(max(l + v, M(0)), M(1)));
    }
  }
}

template <typename T>
void launch(const at::Tensor& x, const at::Tensor& guide, double na, double nb, double luma, double chroma,
            int64_t luma_radius, int64_t chroma_radius, at::Tensor& out, cudaStream_t stream) {
  using M = at::opmath_type<T>;
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HW = H * W;
  const auto mopt = x.options().dtype(c10::CppTypeToScalarType<M>::value);
  at::Tensor q = at::empty({6, H, W}, mopt), tmp = at::empty({6, H, W}, mopt), ab = at::empty({2, H, W}, mopt);
  M* qp = q.data_ptr<M>();
  M* tp = tmp.data_ptr<M>();
  M* abp = ab.data_ptr<M>();
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x.const_data_ptr<T>() + b * C * HW;
    const T* gb = guide.const_data_ptr<T>() + b * C * HW;
    T* ob = out.mutable_data_ptr<T>() + b * C * HW;
    const int planes = C == 3 ? 4 : 1;
    for (int j = 0; j < planes; ++j) {
      const int kind = j == 0 ? kLuma : j - 1;
      // the chroma estimates take their eps from the luma weight; chroma is the share they replace
      const int64_t r = j == 0 ? luma_radius : chroma_radius;
      const bool identity = (j == 0 ? luma : chroma) == 0.0 || r == 0, last = j == planes - 1;
      if (!identity) {
        const int nq = j == 0 ? 4 : 6;
        if (j == 0)
          quantities_kernel<T, M><<<grid_for(HW), kThreads, 0, stream>>>(xb, gb, static_cast<int>(C), HW, kind, qp);
        else
          chroma_quantities_kernel<T, M><<<grid_for(HW), kThreads, 0, stream>>>(xb, gb, ob, HW, kind, qp);
        box_vertical_kernel<M><<<grid_for(nq * W), kThreads, 0, stream>>>(qp, tp, nq, H, W, r);
        box_horizontal_kernel<M><<<grid_for(nq * H), kThreads, 0, stream>>>(tp, qp, nq, H, W, r);
        if (j == 0)
          ab_kernel<M><<<grid_for(HW), kThreads, 0, stream>>>(qp, HW, luma, na, nb, abp);
        else
          chroma_ab_kernel<M><<<grid_for(HW), kThreads, 0, stream>>>(qp, HW, luma, na, nb, abp);
        box_vertical_kernel<M><<<grid_for(2 * W), kThreads, 0, stream>>>(abp, tp, 2, H, W, r);
        box_horizontal_kernel<M><<<grid_for(2 * H), kThreads, 0, stream>>>(tp, abp, 2, H, W, r);
      }
      out_kernel<T, M><<<grid_for(HW), kThreads, 0, stream>>>(xb, gb, static_cast<int>(C), HW, kind, abp, identity,
                                                              last, static_cast<M>(chroma), ob);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
}

at::Tensor guided_denoise_cuda(const at::Tensor& x_in, const at::Tensor& guide_in, double noise_a, double noise_b,
                               double luma, double chroma, int64_t luma_radius, int64_t chroma_radius) {
  const char* op = "guided_denoise";
  check_cuda_image(op, "x", x_in);
  check_cuda_image(op, "guide", guide_in);
  check_same(op, "x", x_in, "guide", guide_in);
  TORCH_CHECK(x_in.sizes() == guide_in.sizes(), op, ": guide shape ", guide_in.sizes(), " != x shape ", x_in.sizes());
  TORCH_CHECK(x_in.size(1) == 1 || x_in.size(1) == 3, op, ": x must have 1 (gray) or 3 (RGB) channels, got ",
              x_in.size(1));
  TORCH_CHECK(luma_radius >= 0 && chroma_radius >= 0, op, ": radii must be >= 0");
  TORCH_CHECK(std::isfinite(noise_a) && std::isfinite(noise_b), op, ": the noise model must be finite");
  TORCH_CHECK(std::isfinite(luma) && luma >= 0, op, ": luma must be finite and >= 0");
  TORCH_CHECK(chroma >= 0 && chroma <= 1, op, ": chroma must be in [0, 1]");
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), guide = guide_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_denoise_cuda", [&] {
    launch<scalar_t>(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius, out, stream);
  });
  return out;
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) { m.impl("guided_denoise", &lowlight_cuda::guided_denoise_cuda); }
