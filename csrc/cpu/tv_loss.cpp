// CPU kernels of tv_loss (kinds "zero_dce", "l1", "iso") and its gradient, one pass over memory each.
//
// dh[i][j] = t[i+1][j] - t[i][j] and dw[i][j] = t[i][j+1] - t[i][j]. A row works on (up, cur, down); at the
// image border the missing neighbour row is cur itself, so its difference is exactly 0 and adds nothing
// (f(0) = 0 for the square, for sign and for the Neumann boundary of "iso"). Work is split into
// (plane, band of rows) tasks with per-task double partial sums added in a fixed order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../limits.h"
#include "../tv_loss.h"
#include "bands.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using lowlight::bands_per_plane;
using Kind = lowlight::TvKind;

// sign(0) = 0, like the gradient autograd gives for abs.
template <typename T>
inline T sign(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

template <typename T, Kind K>
inline T penalty(T v) {
  if constexpr (K == Kind::ZeroDce) return v * v;
  else return std::abs(v);
}

template <typename T, Kind K>
inline T penalty_slope(T v) {  // d penalty / dv, up to the constant folded into the coefficients
  if constexpr (K == Kind::ZeroDce) return v;
  else return sign(v);
}

// Sums over one row of penalty(dh) into *sh and of penalty(dw) into *sw.
template <typename T, Kind K>
LOWLIGHT_CLONES void diff_sums(const T* cur, const T* down, int64_t W, double* sh, double* sw) {
  double h = 0.0, w = 0.0;
#pragma omp simd reduction(+ : h)
  for (int64_t j = 0; j < W; ++j) h += penalty<T, K>(down[j] - cur[j]);
#pragma omp simd reduction(+ : w)
  for (int64_t j = 0; j < W - 1; ++j) w += penalty<T, K>(cur[j + 1] - cur[j]);
  *sh += h;
  *sw += w;
}

// out = ch * (slope(dh above) - slope(dh here)) + cw * (slope(dw left) - slope(dw here)).
template <typename T, Kind K>
LOWLIGHT_CLONES void diff_grad_row(T* __restrict out, const T* up, const T* cur, const T* down, int64_t W, T ch,
                                   T cw) {
  auto at = [&](int64_t j, T left, T right) {
    return ch * (penalty_slope<T, K>(cur[j] - up[j]) - penalty_slope<T, K>(down[j] - cur[j])) +
           cw * (penalty_slope<T, K>(cur[j] - left) - penalty_slope<T, K>(right - cur[j]));
  };
  out[0] = at(0, cur[0], cur[std::min<int64_t>(1, W - 1)]);
  for (int64_t j = 1; j < W - 1; ++j) out[j] = at(j, cur[j - 1], cur[j + 1]);
  if (W > 1) out[W - 1] = at(W - 1, cur[W - 2], cur[W - 1]);
}

// u[j] = dh^2 + dw^2 + eps with the Neumann boundary (dw = 0 in the last column), as reference.tv_loss.
template <typename T>
LOWLIGHT_CLONES void iso_radicands(T* __restrict u, const T* cur, const T* down, int64_t W) {
  const T eps = static_cast<T>(lowlight::kTvIsoEps);
  for (int64_t j = 0; j < W - 1; ++j) {
    const T dh = down[j] - cur[j], dw = cur[j + 1] - cur[j];
    u[j] = dh * dh + dw * dw + eps;
  }
  const T dh = down[W - 1] - cur[W - 1];
  u[W - 1] = dh * dh + eps;
}

// In-place sqrt. GCC only vectorizes sqrt under -fno-math-errno, which the build does not set, so the
// AVX2 version uses intrinsics (function multiversioning picks it at load time where the CPU has AVX2);
// elsewhere (aarch64, clang, LOWLIGHT_NO_X86) one plain loop.
#ifdef LOWLIGHT_X86
__attribute__((target("default"))) void sqrt_inplace(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::sqrt(v[i]);
}
__attribute__((target("avx2"))) void sqrt_inplace(float* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, _mm256_sqrt_ps(_mm256_loadu_ps(v + i)));
  for (; i < n; ++i) v[i] = std::sqrt(v[i]);
}
__attribute__((target("default"))) void sqrt_inplace(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::sqrt(v[i]);
}
__attribute__((target("avx2"))) void sqrt_inplace(double* v, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(v + i, _mm256_sqrt_pd(_mm256_loadu_pd(v + i)));
  for (; i < n; ++i) v[i] = std::sqrt(v[i]);
}
#else
template <typename T>
void sqrt_inplace(T* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::sqrt(v[i]);
}
#endif

template <typename T>
LOWLIGHT_CLONES double sum(const T* v, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += v[j];
  return s;
}

// a = dh / s and b = dw / s of one row, s its sqrt terms: d sqrt(dh^2 + dw^2 + eps) / d(dh, dw).
template <typename T>
LOWLIGHT_CLONES void iso_slopes(T* __restrict a, T* __restrict b, const T* s, const T* cur, const T* down,
                                int64_t W) {
  for (int64_t j = 0; j < W; ++j) a[j] = (down[j] - cur[j]) / s[j];
  for (int64_t j = 0; j < W - 1; ++j) b[j] = (cur[j + 1] - cur[j]) / s[j];
  b[W - 1] = T(0);
}

// Each pixel gets its own term's slope (-a - b) and those of the terms above (a_up) and to its left (b).
template <typename T>
LOWLIGHT_CLONES void iso_grad_row(T* __restrict out, const T* a_up, const T* a, const T* b, int64_t W, T c) {
  out[0] = c * (a_up[0] - a[0] - b[0]);
  for (int64_t j = 1; j < W; ++j) out[j] = c * (a_up[j] - a[j] + b[j - 1] - b[j]);
}

// Calls fn(task, plane, begin_row, end_row) for every (plane, band) task, in parallel.
template <typename Fn>
void for_each_tv_band(int64_t planes, int64_t bands, int64_t H, int64_t W, Fn fn) {
  lowlight::for_each_band(planes, bands, H, planes * H * W < (1 << 16), fn);
}

constexpr int64_t kMinBandRows = 16;

void check_input(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.dim() == 4, op, ": t must be 4-D (B, C, H, W), got ", t.dim(), " dims");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": t must be float32 or float64 on CPU, got ", t.scalar_type());
  TORCH_CHECK(t.size(1) >= 1 && t.size(2) >= 1 && t.size(3) >= 1, op, ": t has an empty dimension: shape ",
              t.sizes());
}

template <typename T, Kind K>
void diff_forward(const T* t, int64_t planes, int64_t bands, int64_t H, int64_t W, double* sums) {
  for_each_tv_band(planes, bands, H, W, [&](int64_t task, int64_t p, int64_t i0, int64_t i1) {
    const T* plane = t + p * H * W;
    double sh = 0.0, sw = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const T* cur = plane + i * W;
      diff_sums<T, K>(cur, i + 1 < H ? cur + W : cur, W, &sh, &sw);
    }
    sums[2 * task] = sh;
    sums[2 * task + 1] = sw;
  });
}

template <typename T>
void iso_forward(const T* t, int64_t planes, int64_t bands, int64_t H, int64_t W, double* sums) {
  for_each_tv_band(planes, bands, H, W, [&](int64_t task, int64_t p, int64_t i0, int64_t i1) {
    const T* plane = t + p * H * W;
    std::vector<T> u(W);
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const T* cur = plane + i * W;
      iso_radicands(u.data(), cur, i + 1 < H ? cur + W : cur, W);
      sqrt_inplace(u.data(), W);
      s += sum(u.data(), W);
    }
    sums[2 * task] = s;
    sums[2 * task + 1] = 0.0;
  });
}

at::Tensor tv_loss_cpu(const at::Tensor& t_in, c10::string_view kind_name) {
  check_input(t_in, "tv_loss");
  const Kind kind = lowlight::parse_tv_kind("tv_loss", kind_name);
  const at::Tensor t = t_in.contiguous();
  const int64_t B = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3), planes = B * C;
  const int64_t bands = bands_per_plane(planes, H, kMinBandRows);
  std::vector<double> sums(2 * planes * bands, 0.0);
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "tv_loss_cpu", [&] {
    const scalar_t* tp = t.const_data_ptr<scalar_t>();
    if (kind == Kind::ZeroDce) diff_forward<scalar_t, Kind::ZeroDce>(tp, planes, bands, H, W, sums.data());
    if (kind == Kind::L1) diff_forward<scalar_t, Kind::L1>(tp, planes, bands, H, W, sums.data());
    if (kind == Kind::Iso) iso_forward<scalar_t>(tp, planes, bands, H, W, sums.data());
  });
  double sh = 0.0, sw = 0.0;  // fixed order: the result does not depend on scheduling
  for (size_t k = 0; k < sums.size(); k += 2) {
    sh += sums[k];
    sw += sums[k + 1];
  }
  return at::scalar_tensor(lowlight::tv_norm(kind, B, C, H, W).loss(sh, sw), t.options());
}

template <typename T, Kind K>
void diff_backward(const T* t, T* gt, int64_t planes, int64_t bands, int64_t H, int64_t W, T ch, T cw) {
  for_each_tv_band(planes, bands, H, W, [&](int64_t, int64_t p, int64_t i0, int64_t i1) {
    const T* plane = t + p * H * W;
    for (int64_t i = i0; i < i1; ++i) {
      const T* cur = plane + i * W;
      diff_grad_row<T, K>(gt + (p * H + i) * W, i > 0 ? cur - W : cur, cur, i + 1 < H ? cur + W : cur, W, ch, cw);
    }
  });
}

template <typename T>
void iso_backward(const T* t, T* gt, int64_t planes, int64_t bands, int64_t H, int64_t W, T c) {
  for_each_tv_band(planes, bands, H, W, [&](int64_t, int64_t p, int64_t i0, int64_t i1) {
    const T* plane = t + p * H * W;
    std::vector<T> s(W), a_up(W, T(0)), a(W), b(W);
    auto slopes = [&](int64_t i, T* a_out) {
      const T* cur = plane + i * W;
      const T* down = i + 1 < H ? cur + W : cur;
      iso_radicands(s.data(), cur, down, W);
      sqrt_inplace(s.data(), W);
      iso_slopes(a_out, b.data(), s.data(), cur, down, W);
    };
    if (i0 > 0) slopes(i0 - 1, a_up.data());  // the band's halo: the row above it
    for (int64_t i = i0; i < i1; ++i) {
      slopes(i, a.data());
      iso_grad_row(gt + (p * H + i) * W, a_up.data(), a.data(), b.data(), W, c);
      std::swap(a_up, a);
    }
  });
}

at::Tensor tv_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& t_in, c10::string_view kind_name) {
  check_input(t_in, "tv_loss_backward");
  const Kind kind = lowlight::parse_tv_kind("tv_loss_backward", kind_name);
  TORCH_CHECK(grad.numel() == 1, "tv_loss_backward: grad must be a scalar, got shape ", grad.sizes());
  const at::Tensor t = t_in.contiguous();
  at::Tensor gt = at::empty(t.sizes(), t.options());
  if (t.numel() == 0) return gt;
  const int64_t B = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3), planes = B * C;
  const int64_t bands = bands_per_plane(planes, H, kMinBandRows);
  const lowlight::TvNorm norm = lowlight::tv_norm(kind, B, C, H, W);
  const double g = grad.item<double>();
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "tv_loss_backward_cpu", [&] {
    const scalar_t* tp = t.const_data_ptr<scalar_t>();
    scalar_t* gp = gt.mutable_data_ptr<scalar_t>();
    // d loss / d (unit slope of a term); a direction without neighbours has coefficient 0.
    const auto ch = static_cast<scalar_t>(norm.coef_h(g)), cw = static_cast<scalar_t>(norm.coef_w(g));
    if (kind == Kind::ZeroDce) diff_backward<scalar_t, Kind::ZeroDce>(tp, gp, planes, bands, H, W, ch, cw);
    if (kind == Kind::L1) diff_backward<scalar_t, Kind::L1>(tp, gp, planes, bands, H, W, ch, cw);
    if (kind == Kind::Iso) iso_backward<scalar_t>(tp, gp, planes, bands, H, W, ch);
  });
  return gt;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) {
  m.impl("tv_loss", &tv_loss_cpu);
  m.impl("tv_loss_backward", &tv_loss_backward_cpu);
}
