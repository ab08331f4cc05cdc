// CPU kernels of lowlight::bilateral_transform and its backward: bilateral_apply's affine step on a float RGB
// image, not clamped (reference.bilateral_transform), the bilateral-grid model's training path. The backward
// gives the gradients of x, the grid and the guide's weights in one pass over the image.
//
// Per image row the grid is lerped once in y into a row table (D x Gw cells of 12 coefficients, x's dtype); per
// pixel the coefficients are two x lerps at the pixel's lower and upper depth and one depth lerp. The backward
// splats each pixel's coefficient gradient into a row accumulator of the same shape (4 cells), which is added
// at the end of the row to the two grid rows it came from, weighted by the y taps: 4 instead of 8 scatters per
// pixel. Rows run in parallel in a fixed number of chunks, each with its own float64 grid accumulator, summed
// in chunk order (bitwise repeatable for a given thread count).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "../bilateral_apply.h"
#include "simd.h"  // LOWLIGHT_CLONES

namespace {

constexpr int64_t kCoeffs = lowlight::kGridCoeffs;

// One coordinate of grid_sample (align_corners=False, padding border): normalized c over n cells, unnormalized
// to ((c + 1) n - 1) / 2 and clamped to [0, n - 1]. `inside`: the unclamped coordinate lies strictly inside
// (grid_sample passes no gradient to a coordinate on or beyond the border). A NaN coordinate reads cell 0: its
// pixel's result is NaN, as the reference's, and no index leaves the grid.
template <typename T>
struct Tap {
  int64_t i0, i1;  // i1 = min(i0 + 1, n - 1); its weight is 0 where it would leave the grid
  T w0, w1;
  bool inside;
};

template <typename T>
inline Tap<T> tap_of(T c, int64_t n) {
  const T s = ((c + T(1)) * static_cast<T>(n) - T(1)) / T(2);
  const T top = static_cast<T>(n - 1);
  const T v = s > T(0) ? (s < top ? s : top) : T(0);  // NaN (a NaN pixel's guidance) -> cell 0
  Tap<T> t;
  t.i0 = static_cast<int64_t>(v);
  t.i1 = std::min(t.i0 + 1, n - 1);
  t.w1 = v - static_cast<T>(t.i0);
  t.w0 = static_cast<T>(t.i0 + 1) - v;
  t.inside = s > T(0) && s < top;
  return t;
}

// The pixel centre of index o of n, normalized as the reference's bilateral_slice makes it: (2 o + 1) / n - 1.
template <typename T>
inline T centre(int64_t o, int64_t n) {
  return (static_cast<T>(o) * T(2) + T(1)) / static_cast<T>(n) - T(1);
}

struct Shape {
  int64_t B, H, W, D, Gh, Gw;
  int64_t cells() const { return D * Gw * kCoeffs; }  // one row table
};

// The grid (B, 12, D, Gh, Gw) lerped in y at image row Y of image b: tab[(d * Gw + gx) * 12 + k].
template <typename T>
void fill_row_table(const T* grid, const Shape& s, int64_t b, const Tap<T>& ty, T* tab) {
  const int64_t plane = s.Gh * s.Gw;
  for (int64_t k = 0; k < kCoeffs; ++k)
    for (int64_t d = 0; d < s.D; ++d) {
      const T* g = grid + ((b * kCoeffs + k) * s.D + d) * plane;
      for (int64_t gx = 0; gx < s.Gw; ++gx)
        tab[(d * s.Gw + gx) * kCoeffs + k] = ty.w0 * g[ty.i0 * s.Gw + gx] + ty.w1 * g[ty.i1 * s.Gw + gx];
    }
}

// What one pixel needs of its row table: the guidance before its clamp, the depth tap, and the coefficients at
// its lower (lo) and upper (hi) depth, lerped in x.
template <typename T>
struct Slice {
  T pre;
  Tap<T> z;
  std::array<T, kCoeffs> lo, hi;
};

template <typename T>
LL_INLINE Slice<T> slice(const T* tab, const Shape& s, const Tap<T>& tx, const T (&v)[3], const T* w) {
  Slice<T> p;
  p.pre = ((v[0] * w[0] + v[1] * w[1]) + v[2] * w[2]) + w[3];
  const T g = std::min(std::max(p.pre, T(0)), T(1));
  p.z = tap_of<T>(g * T(2) - T(1), s.D);
  const T* a = tab + (p.z.i0 * s.Gw + tx.i0) * kCoeffs;
  const T* b = tab + (p.z.i0 * s.Gw + tx.i1) * kCoeffs;
  const T* c = tab + (p.z.i1 * s.Gw + tx.i0) * kCoeffs;
  const T* d = tab + (p.z.i1 * s.Gw + tx.i1) * kCoeffs;
  for (int64_t k = 0; k < kCoeffs; ++k) {
    p.lo[k] = tx.w0 * a[k] + tx.w1 * b[k];
    p.hi[k] = tx.w0 * c[k] + tx.w1 * d[k];
  }
  return p;
}

template <typename T>
LOWLIGHT_CLONES void forward_row(const T* x, int64_t plane, T* y, const T* tab, const Shape& s,
                                 const std::vector<Tap<T>>& xt, const T* w) {
  for (int64_t X = 0; X < s.W; ++X) {
    const T v[3] = {x[X], x[plane + X], x[2 * plane + X]};
    const Slice<T> p = slice(tab, s, xt[X], v, w);
    for (int64_t c = 0; c < 3; ++c) {
      T a[4];
      for (int64_t j = 0; j < 4; ++j) a[j] = p.z.w0 * p.lo[4 * c + j] + p.z.w1 * p.hi[4 * c + j];
      y[c * plane + X] = ((a[0] * v[0] + a[1] * v[1]) + a[2] * v[2]) + a[3];
    }
  }
}

// One row's backward: grad_x written, the coefficient gradients splatted into acc (a row table's shape, zeroed by
// the caller), the guide's weight gradients added to gw.
template <typename T>
LOWLIGHT_CLONES void backward_row(const T* x, const T* gy, int64_t plane, T* gx, const T* tab, T* acc,
                                  const Shape& s, const std::vector<Tap<T>>& xt, const T* w, double* gw) {
  T gw_row[4] = {0, 0, 0, 0};
  const T depth = static_cast<T>(s.D);
  for (int64_t X = 0; X < s.W; ++X) {
    const T v[4] = {x[X], x[plane + X], x[2 * plane + X], T(1)};
    const T dy[3] = {gy[X], gy[plane + X], gy[2 * plane + X]};
    const Tap<T>& tx = xt[X];
    const T rgb[3] = {v[0], v[1], v[2]};
    const Slice<T> p = slice(tab, s, tx, rgb, w);
    T da[kCoeffs];
    T dz = 0;  // d out / d (the depth coordinate)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t j = 0; j < 4; ++j) {
        da[4 * c + j] = dy[c] * v[j];
        dz += da[4 * c + j] * (p.hi[4 * c + j] - p.lo[4 * c + j]);
      }
    // the depth coordinate is g D - 1/2 (g the clamped guidance); clamps pass a gradient inside their range only
    const T dpre = (p.z.inside && p.pre >= T(0) && p.pre <= T(1)) ? dz * depth : T(0);
    for (int64_t c = 0; c < 3; ++c) {
      T sum = 0;
      for (int64_t o = 0; o < 3; ++o) sum += dy[o] * (p.z.w0 * p.lo[4 * o + c] + p.z.w1 * p.hi[4 * o + c]);
      gx[c * plane + X] = sum + dpre * w[c];
    }
    for (int64_t j = 0; j < 4; ++j) gw_row[j] += dpre * v[j];
    T* a = acc + (p.z.i0 * s.Gw + tx.i0) * kCoeffs;
    T* b = acc + (p.z.i0 * s.Gw + tx.i1) * kCoeffs;
    T* c = acc + (p.z.i1 * s.Gw + tx.i0) * kCoeffs;
    T* d = acc + (p.z.i1 * s.Gw + tx.i1) * kCoeffs;
    const T w00 = p.z.w0 * tx.w0, w01 = p.z.w0 * tx.w1, w10 = p.z.w1 * tx.w0, w11 = p.z.w1 * tx.w1;
    for (int64_t k = 0; k < kCoeffs; ++k) a[k] += w00 * da[k];
    for (int64_t k = 0; k < kCoeffs; ++k) b[k] += w01 * da[k];
    for (int64_t k = 0; k < kCoeffs; ++k) c[k] += w10 * da[k];
    for (int64_t k = 0; k < kCoeffs; ++k) d[k] += w11 * da[k];
  }
  for (int64_t j = 0; j < 4; ++j) gw[j] += gw_row[j];
}

template <typename T>
std::vector<Tap<T>> taps(int64_t n, int64_t cells) {
  std::vector<Tap<T>> t(n);
  for (int64_t o = 0; o < n; ++o) t[o] = tap_of<T>(centre<T>(o, n), cells);
  return t;
}

// Rows in a fixed number of contiguous chunks (the backward's accumulators are per chunk).
template <typename F>
void for_row_chunks(int64_t rows, int64_t chunks, const F& f) {
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(c, rows * c / chunks, rows * (c + 1) / chunks);
  });
}

int64_t chunks_for(int64_t rows, int64_t W) {
  const int64_t by_work = std::max<int64_t>(1, rows * W / 16384);  // tiny images: one chunk
  return std::max<int64_t>(1, std::min<int64_t>({rows, by_work, at::get_num_threads()}));
}

Shape shape_of(const at::Tensor& x, const at::Tensor& grid) {
  return Shape{x.size(0), x.size(2), x.size(3), grid.size(2), grid.size(3), grid.size(4)};
}

template <typename T>
void transform_forward(const at::Tensor& x, const at::Tensor& grid, const at::Tensor& guide, at::Tensor& y) {
  const Shape s = shape_of(x, grid);
  const auto xt = taps<T>(s.W, s.Gw);
  const auto yt = taps<T>(s.H, s.Gh);
  const T *xp = x.const_data_ptr<T>(), *gp = grid.const_data_ptr<T>(), *wp = guide.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const int64_t plane = s.H * s.W, rows = s.B * s.H;
  for_row_chunks(rows, chunks_for(rows, s.W), [&](int64_t, int64_t r0, int64_t r1) {
    std::vector<T> tab(s.cells());
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / s.H, Y = row % s.H;
      fill_row_table(gp, s, b, yt[Y], tab.data());
      const int64_t off = b * 3 * plane + Y * s.W;
      forward_row(xp + off, plane, yp + off, tab.data(), s, xt, wp);
    }
  });
}

template <typename T>
void transform_backward(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& grid, const at::Tensor& guide,
                        at::Tensor& gx, at::Tensor& ggrid, at::Tensor& gguide) {
  const Shape s = shape_of(x, grid);
  const auto xt = taps<T>(s.W, s.Gw);
  const auto yt = taps<T>(s.H, s.Gh);
  const T *xp = x.const_data_ptr<T>(), *gyp = gy.const_data_ptr<T>(), *gp = grid.const_data_ptr<T>(),
          *wp = guide.const_data_ptr<T>();
  T* gxp = gx.mutable_data_ptr<T>();
  const int64_t plane = s.H * s.W, rows = s.B * s.H, chunks = chunks_for(rows, s.W);
  const int64_t grid_values = s.B * s.Gh * s.cells();  // per chunk: (B, Gh, D, Gw, 12) float64
  std::vector<std::vector<double>> grid_acc(chunks);
  std::vector<std::array<double, 4>> guide_acc(chunks, {0, 0, 0, 0});
  for_row_chunks(rows, chunks, [&](int64_t c, int64_t r0, int64_t r1) {
    std::vector<double>& out = grid_acc[c];
    out.assign(grid_values, 0.0);
    std::vector<T> tab(s.cells()), acc(s.cells());
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / s.H, Y = row % s.H;
      const Tap<T>& ty = yt[Y];
      fill_row_table(gp, s, b, ty, tab.data());
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t off = b * 3 * plane + Y * s.W;
      backward_row(xp + off, gyp + off, plane, gxp + off, tab.data(), acc.data(), s, xt, wp, guide_acc[c].data());
      double* lo = out.data() + (b * s.Gh + ty.i0) * s.cells();
      double* hi = out.data() + (b * s.Gh + ty.i1) * s.cells();
      for (int64_t i = 0; i < s.cells(); ++i) {
        lo[i] += static_cast<double>(ty.w0) * acc[i];
        hi[i] += static_cast<double>(ty.w1) * acc[i];
      }
    }
  });
  // (B, Gh, D, Gw, 12) chunk sums -> the grid's layout (B, 12, D, Gh, Gw)
  T* gg = ggrid.mutable_data_ptr<T>();
  at::parallel_for(0, s.B * kCoeffs, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / kCoeffs, k = p % kCoeffs;
      for (int64_t d = 0; d < s.D; ++d)
        for (int64_t gyi = 0; gyi < s.Gh; ++gyi)
          for (int64_t gxi = 0; gxi < s.Gw; ++gxi) {
            const int64_t i = ((b * s.Gh + gyi) * s.D + d) * s.Gw * kCoeffs + gxi * kCoeffs + k;
            double sum = 0;
            for (int64_t c = 0; c < chunks; ++c) sum += grid_acc[c][i];
            gg[(((b * kCoeffs + k) * s.D + d) * s.Gh + gyi) * s.Gw + gxi] = static_cast<T>(sum);
          }
    }
  });
  T* gw = gguide.mutable_data_ptr<T>();
  for (int64_t j = 0; j < 4; ++j) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; ++c) sum += guide_acc[c][j];
    gw[j] = static_cast<T>(sum);
  }
}

at::Tensor bilateral_transform_cpu(const at::Tensor& x_in, const at::Tensor& grid_in, const at::Tensor& guide_in) {
  lowlight::check_bilateral_transform_inputs("bilateral_transform", x_in, grid_in, guide_in);
  const at::Tensor x = x_in.contiguous(), grid = grid_in.contiguous(), guide = guide_in.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (y.numel() == 0) return y;
  if (x.scalar_type() == at::kFloat)
    transform_forward<float>(x, grid, guide, y);
  else
    transform_forward<double>(x, grid, guide, y);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bilateral_transform_backward_cpu(const at::Tensor& grad_y,
                                                                                const at::Tensor& x_in,
                                                                                const at::Tensor& grid_in,
                                                                                const at::Tensor& guide_in) {
  const char* op = "bilateral_transform_backward";
  lowlight::check_bilateral_transform_inputs(op, x_in, grid_in, guide_in);
  lowlight::check_bilateral_transform_grad(op, grad_y, x_in);
  const at::Tensor x = x_in.contiguous(), gy = grad_y.contiguous();
  const at::Tensor grid = grid_in.contiguous(), guide = guide_in.contiguous();
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor ggrid = at::zeros_like(grid, at::MemoryFormat::Contiguous);
  at::Tensor gguide = at::zeros_like(guide, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return {gx, ggrid, gguide};
  if (x.scalar_type() == at::kFloat)
    transform_backward<float>(gy, x, grid, guide, gx, ggrid, gguide);
  else
    transform_backward<double>(gy, x, grid, guide, gx, ggrid, gguide);
  return {gx, ggrid, gguide};
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) {
  m.impl("bilateral_transform", &bilateral_transform_cpu);
  m.impl("bilateral_transform_backward", &bilateral_transform_backward_cpu);
}
