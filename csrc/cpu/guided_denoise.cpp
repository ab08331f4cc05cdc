// CPU kernel of lowlight::guided_denoise: the noise-aware self-guided filter of an enhanced image
// (spec: lowlight_core/reference.py guided_denoise).
//
// Per image, plane by plane (luminance, then the three chroma planes x_c - L of an RGB image), two passes
// over the rows, each parallel over bands of rows (at::parallel_for):
//   pass 1: box sums of p, p^2, L_out, L_in over the (2r+1)^2 window -> a, b per pixel (stored in x's dtype);
//   pass 2: box sums of a, b -> p' = mean(a) p + mean(b), added into the output.
// Box sums are running sums: each band keeps one double column sum per quantity, adds the row entering the
// window and subtracts the row leaving it (vectorized over the width), then takes a prefix sum along the row
// and differences it, so the cost per pixel does not depend on the radius. The plane rows (L, x_c - L) are
// recomputed from x where they are needed and never stored. Working memory: two H x W planes (a, b) plus a few
// rows per thread.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../limits.h"

namespace {

constexpr int kLuma = -1;  // plane kinds: kLuma, or the chroma plane of channel 0, 1, 2

template <typename T>
struct Image {
  const T* x;      // (C, H, W) contiguous: the enhanced image
  const T* guide;  // (C, H, W) contiguous: the image it was enhanced from
  int64_t C, H, W;
};

// Row Y of one plane: p (the plane), lo (the output luminance), li (the guide's luminance), in double.
template <typename T>
void plane_row(const Image<T>& im, int kind, int64_t Y, double* p, double* lo, double* li) {
  const int64_t W = im.W, HW = im.H * im.W;
  const T* x = im.x + Y * W;
  const T* g = im.guide + Y * W;
  if (im.C == 1) {
    for (int64_t X = 0; X < W; ++X) lo[X] = static_cast<double>(x[X]), li[X] = static_cast<double>(g[X]);
  } else {
    for (int64_t X = 0; X < W; ++X) {
      lo[X] = (static_cast<double>(x[X]) + static_cast<double>(x[X + HW]) + static_cast<double>(x[X + 2 * HW])) / 3.0;
      li[X] = (static_cast<double>(g[X]) + static_cast<double>(g[X + HW]) + static_cast<double>(g[X + 2 * HW])) / 3.0;
    }
  }
  if (kind == kLuma) {
    std::copy(lo, lo + W, p);
  } else {
    const T* xc = x + kind * HW;
    for (int64_t X = 0; X < W; ++X) p[X] = static_cast<double>(xc[X]) - lo[X];
  }
}

inline void add_to(double* __restrict s, const double* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] += v[i];
}
inline void sub_from(double* __restrict s, const double* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] -= v[i];
}
inline void square_into(double* __restrict out, const double* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = v[i] * v[i];
}

// Prefix sums of q rows of length W (rows q * W ...) into P (rows of W + 1, P[0] = 0). The q chains are
// interleaved so the additions' latency overlaps.
inline void prefix_rows(const double* s, double* P, int q, int64_t W) {
  double acc[4] = {0, 0, 0, 0};
  for (int k = 0; k < q; ++k) P[k * (W + 1)] = 0.0;
  for (int64_t X = 0; X < W; ++X) {
    for (int k = 0; k < q; ++k) {
      acc[k] += s[k * W + X];
      P[k * (W + 1) + X + 1] = acc[k];
    }
  }
}

// The vertical window of row Y: [max(Y - r, 0), min(Y + r, H - 1)].
struct RowWindow {
  int64_t r, H;
  int64_t first(int64_t Y) const { return std::max<int64_t>(Y - r, 0); }
  int64_t last(int64_t Y) const { return std::min<int64_t>(Y + r, H - 1); }
};

// Pass 1 over rows [y0, y1) of one plane: a, b (H x W, x's dtype) of every pixel.
template <typename T>
void pass_ab(const Image<T>& im, int kind, double weight, int64_t r, double na, double nb, int64_t y0, int64_t y1,
             T* A, T* Bv) {
  const int64_t W = im.W;
  const RowWindow win{r, im.H};
  // quantities: 0 p, 1 p^2, 2 L_out, 3 L_in
  std::vector<double> S(4 * W, 0.0), row(4 * W), P(4 * (W + 1));
  auto load = [&](int64_t Y) {
    plane_row(im, kind, Y, row.data(), row.data() + 2 * W, row.data() + 3 * W);
    square_into(row.data() + W, row.data(), W);
  };
  for (int64_t Y = win.first(y0); Y <= win.last(y0); ++Y) load(Y), add_to(S.data(), row.data(), 4 * W);
  for (int64_t Y = y0; Y < y1; ++Y) {
    if (Y > y0) {
      if (Y + r < im.H) load(Y + r), add_to(S.data(), row.data(), 4 * W);
      if (Y - r - 1 >= 0) load(Y - r - 1), sub_from(S.data(), row.data(), 4 * W);
    }
    prefix_rows(S.data(), P.data(), 4, W);
    const double rows = static_cast<double>(win.last(Y) - win.first(Y) + 1);
    const double* P0 = P.data();
    const double* P1 = P0 + (W + 1);
    const double* P2 = P1 + (W + 1);
    const double* P3 = P2 + (W + 1);
    T* a_row = A + Y * W;
    T* b_row = Bv + Y * W;
    for (int64_t X = 0; X < W; ++X) {
      const int64_t lo = std::max<int64_t>(X - r, 0), hi = std::min<int64_t>(X + r, W - 1) + 1;
      const double n = rows * static_cast<double>(hi - lo);
      const double m = (P0[hi] - P0[lo]) / n, mm = (P1[hi] - P1[lo]) / n;
      const double mo = (P2[hi] - P2[lo]) / n, mi = (P3[hi] - P3[lo]) / n;
      const double var = std::max(mm - m * m, 0.0);
      const double gain = mo / std::max(mi, lowlight::kDenoiseGainFloor);
      const double eps = weight * gain * gain * std::max(na * mi + nb, 0.0);
      const double a = eps > 0 ? var / (var + eps) : 1.0;
      a_row[X] = static_cast<T>(a);
      b_row[X] = static_cast<T>(m - a * m);
    }
  }
}

// Pass 2 over rows [y0, y1) of one plane: p' = mean(a) p + mean(b) into out (luma: out_c = L' for every
// channel; chroma: out_c += p', then clamped; clamp_now: the plane is the last one written to out).
template <typename T>
void pass_out(const Image<T>& im, int kind, int64_t r, int64_t y0, int64_t y1, const T* A, const T* Bv, T* out,
              bool clamp_now) {
  const int64_t W = im.W, HW = im.H * im.W;
  const RowWindow win{r, im.H};
  std::vector<double> S(2 * W, 0.0), row(2 * W), P(2 * (W + 1)), p(W), lo(W), li(W), res(W);
  auto load = [&](int64_t Y) {
    for (int64_t X = 0; X < W; ++X) {
      row[X] = static_cast<double>(A[Y * W + X]);
      row[W + X] = static_cast<double>(Bv[Y * W + X]);
    }
  };
  for (int64_t Y = win.first(y0); Y <= win.last(y0); ++Y) load(Y), add_to(S.data(), row.data(), 2 * W);
  for (int64_t Y = y0; Y < y1; ++Y) {
    if (Y > y0) {
      if (Y + r < im.H) load(Y + r), add_to(S.data(), row.data(), 2 * W);
      if (Y - r - 1 >= 0) load(Y - r - 1), sub_from(S.data(), row.data(), 2 * W);
    }
    prefix_rows(S.data(), P.data(), 2, W);
    plane_row(im, kind, Y, p.data(), lo.data(), li.data());
    const double rows = static_cast<double>(win.last(Y) - win.first(Y) + 1);
    const double* P0 = P.data();
    const double* P1 = P0 + (W + 1);
    for (int64_t X = 0; X < W; ++X) {
      const int64_t l = std::max<int64_t>(X - r, 0), h = std::min<int64_t>(X + r, W - 1) + 1;
      const double n = rows * static_cast<double>(h - l);
      res[X] = (P0[h] - P0[l]) / n * p[X] + (P1[h] - P1[l]) / n;
    }
    if (kind == kLuma) {
      for (int64_t c = 0; c < im.C; ++c) {
        T* o = out + c * HW + Y * W;
        for (int64_t X = 0; X < W; ++X)
          o[X] = static_cast<T>(clamp_now ? std::min(std::max(res[X], 0.0), 1.0) : res[X]);
      }
    } else {
      T* o = out + kind * HW + Y * W;
      for (int64_t X = 0; X < W; ++X) {
        const double v = static_cast<double>(o[X]) + res[X];
        o[X] = static_cast<T>(std::min(std::max(v, 0.0), 1.0));
      }
    }
  }
}

// A plane passed through (weight 0 or radius 0): p' = p.
template <typename T>
void pass_identity(const Image<T>& im, int kind, int64_t y0, int64_t y1, T* out, bool clamp_now) {
  const int64_t W = im.W, HW = im.H * im.W;
  std::vector<double> p(W), lo(W), li(W);
  for (int64_t Y = y0; Y < y1; ++Y) {
    plane_row(im, kind, Y, p.data(), lo.data(), li.data());
    if (kind == kLuma) {
      for (int64_t c = 0; c < im.C; ++c) {
        T* o = out + c * HW + Y * W;
        for (int64_t X = 0; X < W; ++X)
          o[X] = static_cast<T>(clamp_now ? std::min(std::max(p[X], 0.0), 1.0) : p[X]);
      }
    } else {
      T* o = out + kind * HW + Y * W;
      for (int64_t X = 0; X < W; ++X)
        o[X] = static_cast<T>(std::min(std::max(static_cast<double>(o[X]) + p[X], 0.0), 1.0));
    }
  }
}

template <typename T>
void guided_denoise_impl(const at::Tensor& x, const at::Tensor& guide, double na, double nb, double luma,
                         double chroma, int64_t luma_radius, int64_t chroma_radius, at::Tensor& out) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  std::vector<T> A(H * W), Bv(H * W);
  for (int64_t b = 0; b < B; ++b) {
    const Image<T> im{x.const_data_ptr<T>() + b * C * H * W, guide.const_data_ptr<T>() + b * C * H * W, C, H, W};
    T* o = out.mutable_data_ptr<T>() + b * C * H * W;
    const int planes = C == 3 ? 4 : 1;
    for (int j = 0; j < planes; ++j) {
      const int kind = j == 0 ? kLuma : j - 1;
      const double weight = j == 0 ? luma : chroma;
      const int64_t r = j == 0 ? luma_radius : chroma_radius;
      const bool last = j == planes - 1;
      // bands at least a window high so that the per-band start-up (2r + 1 rows) stays a small overhead
      const int64_t grain = std::max<int64_t>(4 * r + 4, 16);
      if (weight == 0.0 || r == 0) {
        at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) { pass_identity(im, kind, y0, y1, o, last); });
        continue;
      }
      at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) {
        pass_ab(im, kind, weight, r, na, nb, y0, y1, A.data(), Bv.data());
      });
      at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) {
        pass_out(im, kind, r, y0, y1, A.data(), Bv.data(), o, last);
      });
    }
  }
}

at::Tensor guided_denoise_cpu(const at::Tensor& x_in, const at::Tensor& guide_in, double noise_a, double noise_b,
                              double luma, double chroma, int64_t luma_radius, int64_t chroma_radius) {
  const char* op = "guided_denoise";
  TORCH_CHECK(x_in.dim() == 4, op, ": x must be 4-D (B, C, H, W), got shape ", x_in.sizes());
  TORCH_CHECK(x_in.sizes() == guide_in.sizes(), op, ": guide shape ", guide_in.sizes(), " != x shape ", x_in.sizes());
  TORCH_CHECK(x_in.scalar_type() == guide_in.scalar_type(), op, ": guide is ", guide_in.scalar_type(), " but x is ",
              x_in.scalar_type());
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x_in.scalar_type());
  TORCH_CHECK(x_in.size(1) == 1 || x_in.size(1) == 3, op, ": x must have 1 (gray) or 3 (RGB) channels, got ",
              x_in.size(1));
  TORCH_CHECK(x_in.size(2) >= 1 && x_in.size(3) >= 1, op, ": x has an empty dimension: ", x_in.sizes());
  TORCH_CHECK(luma_radius >= 0 && chroma_radius >= 0, op, ": radii must be >= 0, got ", luma_radius, ", ",
              chroma_radius);
  TORCH_CHECK(std::isfinite(noise_a) && std::isfinite(noise_b), op, ": the noise model must be finite");
  TORCH_CHECK(std::isfinite(luma) && luma >= 0 && std::isfinite(chroma) && chroma >= 0, op,
              ": luma and chroma weights must be finite and >= 0, got ", luma, ", ", chroma);
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), guide = guide_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "guided_denoise", [&] {
    guided_denoise_impl<scalar_t>(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) { m.impl("guided_denoise", &guided_denoise_cpu); }
