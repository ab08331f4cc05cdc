// CPU kernel of lowlight::guided_denoise: the noise-aware guided filter of an enhanced image
// (spec: lowlight_core/reference.py guided_denoise).
//
// Per image, the luminance plane, then the three chroma planes x_c - L of an RGB image together (they share
// L_out, L_in, the denoised luminance L' and the radius), two passes over the rows, each parallel over bands of
// rows (at::parallel_for):
//   luminance pass 1: box sums of L, L^2, L_out, L_in over the (2r+1)^2 window -> a, b per pixel (stored in
//           x's dtype); pass 2: box sums of a, b -> L' = mean(a) L + mean(b), written to every channel;
//   chroma pass 1: box sums of p, L' p (each plane), L', L'^2, L_out, L_in -> A, B of the estimate of p as a
//           local linear function of L' (L' read back from the output); pass 2: box sums of A, B ->
//           p' = p + share (mean(A) L' + mean(B) - p), added to its channel.
// Box sums are running sums: each band keeps one double column sum per quantity, adds the row entering the
// window and subtracts the row leaving it (vectorized over the width), then takes a prefix sum along the row
// and differences it, so the cost per pixel does not depend on the radius. The plane rows (L, x_c - L) are
// recomputed from x where they are needed and never stored. Working memory: 2 x 3 H x W planes (a, b of the chroma planes)
// plus a few rows per thread. The row loops have AVX-512 / AVX2 clones (simd.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../limits.h"
#include "huge_pages.h"
#include "simd.h"

namespace {

constexpr int kLuma = -1;    // plane kinds: kLuma, or the chroma plane of channel 0, 1, 2
constexpr int kMaxPlanes = 3;

template <typename T>
struct Image {
  const T* x;      // (C, H, W) contiguous: the enhanced image
  const T* guide;  // (C, H, W) contiguous: the image it was enhanced from
  int64_t C, H, W;
};

// A group of planes filtered together with one eps weight and radius: the luminance alone, or the three chroma
// planes (which share the rows of L_out, L_in and L' and their box sums; share: how much of each plane its
// estimate replaces).
struct Group {
  int planes;
  int kinds[kMaxPlanes];
  double weight;
  int64_t r;
  double share;
};

// ---------------------------------------------------------------- row loops (vectorized clones on x86-64)

LOWLIGHT_CLONES void add_to(double* __restrict s, const double* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] += v[i];
}
LOWLIGHT_CLONES void sub_from(double* __restrict s, const double* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) s[i] -= v[i];
}

// Horizontal window sums of one row s (length W) into out, from its prefix sums P (length W + 1).
LOWLIGHT_CLONES void box_row(const double* __restrict P, double* __restrict out, int64_t W, int64_t r) {
  const int64_t a = std::min(r, W), b = std::max(a, W - r - 1);  // interior [a, b): full windows
  for (int64_t X = 0; X < a; ++X) out[X] = P[std::min(X + r, W - 1) + 1] - P[0];
  for (int64_t X = a; X < b; ++X) out[X] = P[X + r + 1] - P[X - r];
  for (int64_t X = b; X < W; ++X) out[X] = P[std::min(X + r, W - 1) + 1] - P[std::max<int64_t>(X - r, 0)];
}

// Prefix sums of Q rows (s: Q x W) into P (Q x (W + 1), P[q][0] = 0). The Q chains advance together, so
// the additions' latency overlaps (one chain at a time was the kernel's bottleneck).
template <int Q>
void prefix_rows(const double* __restrict s, double* __restrict P, int64_t W) {
  double acc[Q];
  for (int q = 0; q < Q; ++q) acc[q] = 0.0, P[q * (W + 1)] = 0.0;
  for (int64_t X = 0; X < W; ++X) {
    for (int q = 0; q < Q; ++q) {
      acc[q] += s[q * W + X];
      P[q * (W + 1) + X + 1] = acc[q];
    }
  }
}

inline void prefix_any(int Q, const double* s, double* P, int64_t W) {
  switch (Q) {
    case 2: prefix_rows<2>(s, P, W); break;
    case 4: prefix_rows<4>(s, P, W); break;
    case 6: prefix_rows<6>(s, P, W); break;
    default: prefix_rows<10>(s, P, W); break;  // the only other count: chroma pass 1, 3 planes x 2 + 4
  }
}

// Per pixel of one row: base = weight * gain^2 * noise variance of the window (from the box sums of L_out and
// L_in), inv = 1 / pixel count of the window.
LOWLIGHT_CLONES void eps_row(const double* __restrict so, const double* __restrict si,
                             const double* __restrict inv, double weight, double na, double nb,
                             double* __restrict base, int64_t W) {
  for (int64_t X = 0; X < W; ++X) {
    const double mo = so[X] * inv[X], mi = si[X] * inv[X];
    const double gain = mo / std::max(mi, lowlight::kDenoiseGainFloor);
    base[X] = weight * gain * gain * std::max(na * mi + nb, 0.0);
  }
}

// a = var / (var + eps) (1 where eps = 0), b = m - a m, from the box sums of p and p^2.
LOWLIGHT_CLONES void ab_row(const double* __restrict s1, const double* __restrict s2, const double* __restrict inv,
                            const double* __restrict eps, double* __restrict a, double* __restrict b, int64_t W) {
  for (int64_t X = 0; X < W; ++X) {
    const double m = s1[X] * inv[X], mm = s2[X] * inv[X];
    const double var = std::max(mm - m * m, 0.0);
    const double av = eps[X] > 0 ? var / (var + eps[X]) : 1.0;
    a[X] = av;
    b[X] = m - av * m;
  }
}

// The chroma estimate's A = cov(L', p) / (var(L') + eps), B = m_p - A m_L', from the box sums of p, L' p, L',
// L'^2 (eps already holds the floor).
LOWLIGHT_CLONES void joint_ab_row(const double* __restrict sp, const double* __restrict sgp,
                                  const double* __restrict sg, const double* __restrict sgg,
                                  const double* __restrict inv, const double* __restrict eps, double* __restrict a,
                                  double* __restrict b, int64_t W) {
  for (int64_t X = 0; X < W; ++X) {
    const double mp = sp[X] * inv[X], mg = sg[X] * inv[X];
    const double var = std::max(sgg[X] * inv[X] - mg * mg, 0.0), cov = sgp[X] * inv[X] - mg * mp;
    const double av = cov / (var + eps[X]);
    a[X] = av;
    b[X] = mp - av * mg;
  }
}

// p' = mean(a) p + mean(b)
LOWLIGHT_CLONES void filter_row(const double* __restrict sa, const double* __restrict sb,
                                const double* __restrict inv, const double* __restrict p, double* __restrict out,
                                int64_t W) {
  for (int64_t X = 0; X < W; ++X) out[X] = sa[X] * inv[X] * p[X] + sb[X] * inv[X];
}

// ---------------------------------------------------------------- plane rows

// Row Y of L_out (lo) and L_in (li), and of the group's planes (p + k * W), in double.
template <typename T>
void plane_rows(const Image<T>& im, const Group& g, int64_t Y, double* p, double* lo, double* li) {
  const int64_t W = im.W, HW = im.H * im.W;
  const T* x = im.x + Y * W;
  const T* gd = im.guide + Y * W;
  if (im.C == 1) {
    for (int64_t X = 0; X < W; ++X) lo[X] = static_cast<double>(x[X]), li[X] = static_cast<double>(gd[X]);
  } else {
    for (int64_t X = 0; X < W; ++X) {
      lo[X] = (static_cast<double>(x[X]) + static_cast<double>(x[X + HW]) + static_cast<double>(x[X + 2 * HW])) / 3.0;
      li[X] = (static_cast<double>(gd[X]) + static_cast<double>(gd[X + HW]) + static_cast<double>(gd[X + 2 * HW])) / 3.0;
    }
  }
  for (int k = 0; k < g.planes; ++k) {
    double* pk = p + k * W;
    if (g.kinds[k] == kLuma) {
      std::copy(lo, lo + W, pk);
    } else {
      const T* xc = x + g.kinds[k] * HW;
      for (int64_t X = 0; X < W; ++X) pk[X] = static_cast<double>(xc[X]) - lo[X];
    }
  }
}

// 1 / (pixels in the window) per X of a row whose window spans `rows` rows.
inline void inverse_counts(int64_t W, int64_t r, double rows, double* inv) {
  for (int64_t X = 0; X < W; ++X) {
    const int64_t cols = std::min(X + r, W - 1) - std::max<int64_t>(X - r, 0) + 1;
    inv[X] = 1.0 / (rows * static_cast<double>(cols));
  }
}

// Running column sums of Q quantity rows over the window [Y - r, Y + r] of rows y0 <= Y < y1: for each Y,
// `load(Y, row)` fills the Q rows of image row Y and `emit(Y, S)` gets the Q column sums.
template <typename Load, typename Emit>
void running_rows(int64_t H, int64_t r, int64_t y0, int64_t y1, int64_t len, Load load, Emit emit) {
  std::vector<double> S(len, 0.0), row(len);
  for (int64_t Y = std::max<int64_t>(y0 - r, 0); Y <= std::min(y0 + r, H - 1); ++Y) {
    load(Y, row.data());
    add_to(S.data(), row.data(), len);
  }
  for (int64_t Y = y0; Y < y1; ++Y) {
    if (Y > y0) {
      if (Y + r < H) load(Y + r, row.data()), add_to(S.data(), row.data(), len);
      if (Y - r - 1 >= 0) load(Y - r - 1, row.data()), sub_from(S.data(), row.data(), len);
    }
    emit(Y, S.data());
  }
}

// Pass 1 over rows [y0, y1): a and b of every plane of the group (A, Bv: planes x H x W, x's dtype).
// Quantities per row: p_k and p_k^2 for each plane k, then L_out and L_in.
template <typename T>
void pass_ab(const Image<T>& im, const Group& g, double na, double nb, int64_t y0, int64_t y1, T* A, T* Bv) {
  const int64_t W = im.W, HW = im.H * im.W, P = g.planes, Q = 2 * P + 2;
  std::vector<double> pre(Q * (W + 1)), box(Q * W), inv(W), eps(W), a(W), b(W);
  auto load = [&](int64_t Y, double* row) {
    double* lo = row + 2 * P * W;
    plane_rows(im, g, Y, row, lo, lo + W);
    for (int64_t k = P - 1; k >= 0; --k) {  // p_k to slot 2k, p_k^2 to slot 2k + 1 (from the top: no overlap)
      double* pk = row + k * W;
      double* dst = row + 2 * k * W;
      if (dst != pk) std::copy(pk, pk + W, dst);
      for (int64_t X = 0; X < W; ++X) dst[W + X] = dst[X] * dst[X];
    }
  };
  auto emit = [&](int64_t Y, const double* S) {
    prefix_any(static_cast<int>(Q), S, pre.data(), W);
    for (int64_t q = 0; q < Q; ++q) box_row(pre.data() + q * (W + 1), box.data() + q * W, W, g.r);
    const double rows = static_cast<double>(std::min(Y + g.r, im.H - 1) - std::max<int64_t>(Y - g.r, 0) + 1);
    inverse_counts(W, g.r, rows, inv.data());
    eps_row(box.data() + 2 * P * W, box.data() + (2 * P + 1) * W, inv.data(), g.weight, na, nb, eps.data(), W);
    for (int64_t k = 0; k < P; ++k) {
      ab_row(box.data() + 2 * k * W, box.data() + (2 * k + 1) * W, inv.data(), eps.data(), a.data(), b.data(), W);
      T* ak = A + k * HW + Y * W;
      T* bk = Bv + k * HW + Y * W;
      for (int64_t X = 0; X < W; ++X) ak[X] = static_cast<T>(a[X]), bk[X] = static_cast<T>(b[X]);
    }
  };
  running_rows(im.H, g.r, y0, y1, Q * W, load, emit);
}

// Chroma pass 1 over rows [y0, y1): A and B of every chroma plane's estimate from L' (lum: (H, W), the
// denoised luminance the luminance pass wrote). Quantities per row: p_k (k < P), L' p_k, then L', L'^2, L_out,
// L_in.
template <typename T>
void pass_ab_chroma(const Image<T>& im, const Group& g, double na, double nb, const T* lum, int64_t y0,
                    int64_t y1, T* A, T* Bv) {
  const int64_t W = im.W, HW = im.H * im.W, P = g.planes, Q = 2 * P + 4;
  std::vector<double> pre(Q * (W + 1)), box(Q * W), inv(W), eps(W), a(W), b(W);
  auto load = [&](int64_t Y, double* row) {
    double* gl = row + 2 * P * W;
    plane_rows(im, g, Y, row, gl + 2 * W, gl + 3 * W);
    const T* l = lum + Y * W;
    for (int64_t X = 0; X < W; ++X) gl[X] = static_cast<double>(l[X]), gl[W + X] = gl[X] * gl[X];
    for (int64_t k = 0; k < P; ++k)
      for (int64_t X = 0; X < W; ++X) row[(P + k) * W + X] = gl[X] * row[k * W + X];
  };
  auto emit = [&](int64_t Y, const double* S) {
    prefix_any(static_cast<int>(Q), S, pre.data(), W);
    for (int64_t q = 0; q < Q; ++q) box_row(pre.data() + q * (W + 1), box.data() + q * W, W, g.r);
    const double rows = static_cast<double>(std::min(Y + g.r, im.H - 1) - std::max<int64_t>(Y - g.r, 0) + 1);
    inverse_counts(W, g.r, rows, inv.data());
    const double* sg = box.data() + 2 * P * W;
    eps_row(sg + 2 * W, sg + 3 * W, inv.data(), g.weight, na, nb, eps.data(), W);
    for (int64_t X = 0; X < W; ++X) eps[X] += lowlight::kDenoiseEpsFloor;
    for (int64_t k = 0; k < P; ++k) {
      joint_ab_row(box.data() + k * W, box.data() + (P + k) * W, sg, sg + W, inv.data(), eps.data(), a.data(),
                   b.data(), W);
      T* ak = A + k * HW + Y * W;
      T* bk = Bv + k * HW + Y * W;
      for (int64_t X = 0; X < W; ++X) ak[X] = static_cast<T>(a[X]), bk[X] = static_cast<T>(b[X]);
    }
  };
  running_rows(im.H, g.r, y0, y1, Q * W, load, emit);
}

// Pass 2 over rows [y0, y1): box sums of a and b of every plane; the luminance writes L' = mean(a) L + mean(b)
// to every channel (clamped when it is the only plane: gray); a chroma plane adds
// p' = p + share (mean(a) L' + mean(b) - p) to its channel (which holds L') and clamps. identity: the planes
// pass through (p' = p).
template <typename T>
void pass_out(const Image<T>& im, const Group& g, bool identity, bool clamp_luma, int64_t y0, int64_t y1,
              const T* A, const T* Bv, T* out) {
  const int64_t W = im.W, HW = im.H * im.W, P = g.planes;
  std::vector<double> pre(2 * P * (W + 1)), box(2 * P * W), inv(W), p(P * W), lo(W), li(W), res(W), lum(W);
  const bool chroma = g.kinds[0] != kLuma;
  auto write = [&](int64_t Y, int64_t k, const double* v) {
    if (g.kinds[k] == kLuma) {
      for (int64_t c = 0; c < im.C; ++c) {
        T* o = out + c * HW + Y * W;
        for (int64_t X = 0; X < W; ++X) o[X] = static_cast<T>(clamp_luma ? std::min(std::max(v[X], 0.0), 1.0) : v[X]);
      }
    } else {
      T* o = out + g.kinds[k] * HW + Y * W;
      for (int64_t X = 0; X < W; ++X)
        o[X] = static_cast<T>(std::min(std::max(static_cast<double>(o[X]) + v[X], 0.0), 1.0));
    }
  };
  if (identity) {
    for (int64_t Y = y0; Y < y1; ++Y) {
      plane_rows(im, g, Y, p.data(), lo.data(), li.data());
      for (int64_t k = 0; k < P; ++k) write(Y, k, p.data() + k * W);
    }
    return;
  }
  auto load = [&](int64_t Y, double* row) {
    for (int64_t k = 0; k < P; ++k) {
      const T* ak = A + k * HW + Y * W;
      const T* bk = Bv + k * HW + Y * W;
      for (int64_t X = 0; X < W; ++X) row[2 * k * W + X] = static_cast<double>(ak[X]);
      for (int64_t X = 0; X < W; ++X) row[(2 * k + 1) * W + X] = static_cast<double>(bk[X]);
    }
  };
  auto emit = [&](int64_t Y, const double* S) {
    prefix_any(static_cast<int>(2 * P), S, pre.data(), W);
    for (int64_t q = 0; q < 2 * P; ++q) box_row(pre.data() + q * (W + 1), box.data() + q * W, W, g.r);
    const double rows = static_cast<double>(std::min(Y + g.r, im.H - 1) - std::max<int64_t>(Y - g.r, 0) + 1);
    inverse_counts(W, g.r, rows, inv.data());
    plane_rows(im, g, Y, p.data(), lo.data(), li.data());
    if (chroma) {  // L' of this row, read before the planes are added to the channels
      const T* l = out + Y * W;
      for (int64_t X = 0; X < W; ++X) lum[X] = static_cast<double>(l[X]);
    }
    for (int64_t k = 0; k < P; ++k) {
      const double* pk = p.data() + k * W;
      filter_row(box.data() + 2 * k * W, box.data() + (2 * k + 1) * W, inv.data(), chroma ? lum.data() : pk,
                 res.data(), W);
      if (chroma)
        for (int64_t X = 0; X < W; ++X) res[X] = pk[X] + g.share * (res[X] - pk[X]);
      write(Y, k, res.data());
    }
  };
  running_rows(im.H, g.r, y0, y1, 2 * P * W, load, emit);
}

template <typename T>
void guided_denoise_impl(const at::Tensor& x, const at::Tensor& guide, double na, double nb, double luma,
                         double chroma, int64_t luma_radius, int64_t chroma_radius, at::Tensor& out) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  // the chroma estimates take their eps from the luma weight; chroma is the share they replace
  const Group groups[2] = {{1, {kLuma, 0, 0}, luma, luma_radius, 1.0}, {3, {0, 1, 2}, luma, chroma_radius, chroma}};
  const int n_groups = C == 3 ? 2 : 1;
  // a and b of every plane of a group, for its second pass (huge pages: ~100 MB fresh per 4 MP call)
  at::Tensor ab = at::empty({2, C == 3 ? 3 : 1, H, W}, x.options());
  lowlight::advise_huge_pages(ab);
  T* A = ab.mutable_data_ptr<T>();
  T* Bv = A + ab.stride(0);
  for (int64_t b = 0; b < B; ++b) {
    const Image<T> im{x.const_data_ptr<T>() + b * C * H * W, guide.const_data_ptr<T>() + b * C * H * W, C, H, W};
    T* o = out.mutable_data_ptr<T>() + b * C * H * W;
    for (int j = 0; j < n_groups; ++j) {
      const Group& g = groups[j];
      const bool identity = (j == 0 ? g.weight : g.share) == 0.0 || g.r == 0;
      // bands at least a few windows high so that the per-band start-up (2r + 1 rows) stays a small overhead
      const int64_t grain = std::max<int64_t>(4 * g.r + 4, 16);
      if (!identity) {
        at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) {
          if (j == 0)
            pass_ab(im, g, na, nb, y0, y1, A, Bv);
          else
            pass_ab_chroma(im, g, na, nb, o, y0, y1, A, Bv);
        });
      }
      at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) {
        pass_out(im, g, identity, C == 1, y0, y1, A, Bv, o);
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
  TORCH_CHECK(std::isfinite(luma) && luma >= 0, op, ": luma must be finite and >= 0, got ", luma);
  TORCH_CHECK(chroma >= 0 && chroma <= 1, op, ": chroma must be in [0, 1], got ", chroma);
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  lowlight::advise_huge_pages(out);
  const at::Tensor x = x_in.contiguous(), guide = guide_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "guided_denoise", [&] {
    guided_denoise_impl<scalar_t>(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) { m.impl("guided_denoise", &guided_denoise_cpu); }
