// CPU kernels of blur_color_loss: mean((G * (x - y))^2) and its gradient grad * (2/N) * G * (G * (x - y)).
//
// G is separable and zero padded, so both passes run row by row: a horizontal 1-D blur of each row and a
// vertical 1-D blur over a ring buffer of the last ksize horizontally blurred rows. Nothing of full image
// size is allocated besides the gradient itself. Work is split into (plane, band of rows) tasks; a band
// recomputes the rows of its halo, which lets both threads work on one large image.
// The adjoint of a zero-padded "same" blur with a symmetric kernel is the same blur, so the backward blurs
// the difference twice: each row twice horizontally, then twice vertically (the zero-padded 1-D blurs along
// rows and along columns commute).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../limits.h"
#include "bands.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using lowlight::bands_per_plane;

// out[j] = sum_m w[m] * rows[m][j]. Both blur directions use it: vertically rows[m] are image rows,
// horizontally rows[m] = padded_row + m. Taps are summed four at a time to save loads and stores of out.
template <typename T>
LOWLIGHT_CLONES void weighted_sum_rows(T* __restrict out, const T* const* rows, const T* w, int64_t n,
                                       int64_t W) {
  int64_t m = 0;
  if (n >= 4) {
    const T *a = rows[0], *b = rows[1], *c = rows[2], *d = rows[3];
    const T wa = w[0], wb = w[1], wc = w[2], wd = w[3];
    for (int64_t j = 0; j < W; ++j) out[j] = wa * a[j] + wb * b[j] + wc * c[j] + wd * d[j];
    m = 4;
  } else {
    const T* a = rows[0];
    const T wa = w[0];
    for (int64_t j = 0; j < W; ++j) out[j] = wa * a[j];
    m = 1;
  }
  for (; m + 4 <= n; m += 4) {
    const T *a = rows[m], *b = rows[m + 1], *c = rows[m + 2], *d = rows[m + 3];
    const T wa = w[m], wb = w[m + 1], wc = w[m + 2], wd = w[m + 3];
    for (int64_t j = 0; j < W; ++j) out[j] += wa * a[j] + wb * b[j] + wc * c[j] + wd * d[j];
  }
  for (; m < n; ++m) {
    const T* a = rows[m];
    const T wa = w[m];
    for (int64_t j = 0; j < W; ++j) out[j] += wa * a[j];
  }
}

template <typename T>
LOWLIGHT_CLONES void difference(T* __restrict out, const T* a, const T* b, int64_t W) {
  for (int64_t j = 0; j < W; ++j) out[j] = a[j] - b[j];
}

template <typename T>
LOWLIGHT_CLONES double sum_squares(const T* a, int64_t W) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < W; ++j) s += static_cast<double>(a[j]) * static_cast<double>(a[j]);
  return s;
}

// Normalized Gaussian exactly as reference.gaussian_kernel1d: float64, normalized, then cast.
template <typename T>
std::vector<T> gaussian_weights(double sigma, int64_t ksize) {
  const int64_t r = ksize / 2;
  std::vector<double> g(ksize);
  double total = 0.0;
  for (int64_t k = 0; k < ksize; ++k) {
    const double t = static_cast<double>(k - r);
    g[k] = std::exp(-(t * t) / (2.0 * sigma * sigma));
    total += g[k];
  }
  std::vector<T> out(ksize);
  for (int64_t k = 0; k < ksize; ++k) out[k] = static_cast<T>(g[k] / total);
  return out;
}

// One plane (H x W) of the blur pipeline with its scratch: a zero-padded row and ring buffers of the last
// min(ksize, H) rows (never more rows are needed at once).
template <typename T>
struct Blurrer {
  int64_t H, W, K, r, ring_rows;
  const T* g;
  std::vector<T> padded;                // W + 2r, zeros at both ends
  std::vector<T> tmp;                   // W
  std::vector<T> ring_h, ring_v;        // ring_rows rows each
  std::vector<const T*> rows;           // K row pointers for weighted_sum_rows
  std::vector<T> w;                     // K weights for weighted_sum_rows
  int64_t next_h = 0, next_v = 0;       // next row of ring_h / ring_v to compute

  Blurrer(int64_t H_, int64_t W_, int64_t K_, const T* g_, bool twice)
      : H(H_), W(W_), K(K_), r(K_ / 2), ring_rows(std::min(K_, H_)), g(g_), padded(W_ + K_ - 1, T(0)), tmp(W_),
        ring_h(ring_rows * W_), ring_v(twice ? ring_rows * W_ : 0), rows(K_), w(K_) {}

  T* h_row(int64_t q) { return ring_h.data() + (q % ring_rows) * W; }
  T* v_row(int64_t q) { return ring_v.data() + (q % ring_rows) * W; }

  // Horizontal blur of the row in padded's interior into out.
  void blur_padded_row(T* out) {
    for (int64_t m = 0; m < K; ++m) rows[m] = padded.data() + m;
    weighted_sum_rows(out, rows.data(), g, K, W);
  }

  // out = vertical blur at row i of the rows src(q), q in [0, H) (zero outside).
  template <typename Src>
  void blur_column(T* out, int64_t i, Src src, T scale) {
    const int64_t lo = std::max<int64_t>(0, i - r), hi = std::min<int64_t>(H - 1, i + r);
    int64_t n = 0;
    for (int64_t q = lo; q <= hi; ++q, ++n) {
      rows[n] = src(q);
      w[n] = scale * g[q - i + r];
    }
    weighted_sum_rows(out, rows.data(), w.data(), n, W);
  }

  // ring_h row q = horizontal blur (applied `passes` times) of row q of x - y.
  void compute_h(const T* x, const T* y, int64_t q, int passes) {
    T* interior = padded.data() + r;
    difference(interior, x + q * W, y + q * W, W);
    for (int p = 1; p < passes; ++p) {
      blur_padded_row(tmp.data());
      std::copy(tmp.begin(), tmp.end(), interior);
    }
    blur_padded_row(h_row(q));
  }

  void ensure_h(const T* x, const T* y, int64_t upto, int passes) {
    for (upto = std::min(upto, H - 1); next_h <= upto; ++next_h) compute_h(x, y, next_h, passes);
  }

  // Sum over rows [i0, i1) of the squared blurred difference.
  double forward_band(const T* x, const T* y, int64_t i0, int64_t i1) {
    next_h = std::max<int64_t>(0, i0 - r);
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      ensure_h(x, y, i + r, 1);
      blur_column(tmp.data(), i, [&](int64_t q) { return h_row(q); }, T(1));
      s += sum_squares(tmp.data(), W);
    }
    return s;
  }

  // Rows [i0, i1) of scale * G * (G * (x - y)) into gx.
  void backward_band(const T* x, const T* y, T* gx, int64_t i0, int64_t i1, T scale) {
    next_h = std::max<int64_t>(0, i0 - 2 * r);
    next_v = std::max<int64_t>(0, i0 - r);
    for (int64_t i = i0; i < i1; ++i) {
      for (const int64_t upto = std::min(i + r, H - 1); next_v <= upto; ++next_v) {
        ensure_h(x, y, next_v + r, 2);
        blur_column(v_row(next_v), next_v, [&](int64_t q) { return h_row(q); }, T(1));
      }
      blur_column(gx + i * W, i, [&](int64_t q) { return v_row(q); }, scale);
    }
  }
};

int64_t blur_bands(int64_t planes, int64_t H, int64_t ksize) {
  return bands_per_plane(planes, H, std::max<int64_t>(32, 4 * ksize));
}

// Calls fn(task, plane, begin_row, end_row, blurrer) for every (plane, band) task, in parallel, with one
// Blurrer (its row buffers) per thread.
template <typename T, typename Fn>
void for_each_blur_band(int64_t planes, int64_t bands, int64_t H, int64_t W, int64_t K, const T* g, bool twice,
                        Fn fn) {
  const bool serial = planes * H * W * K < (1 << 18);
  lowlight::for_each_band(planes, bands, H, serial, [&] { return Blurrer<T>(H, W, K, g, twice); }, fn);
}

void check_inputs(const at::Tensor& x, const at::Tensor& y, double sigma, int64_t ksize) {
  TORCH_CHECK(x.dim() == 4, "blur_color_loss: x must be 4-D (B, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "blur_color_loss: x must be float32 or float64 on CPU, got ", x.scalar_type());
  TORCH_CHECK(y.device() == x.device(), "blur_color_loss: y is on ", y.device(), " but x is on ", x.device());
  TORCH_CHECK(y.scalar_type() == x.scalar_type(), "blur_color_loss: y is ", y.scalar_type(), " but x is ",
              x.scalar_type());
  TORCH_CHECK(y.sizes() == x.sizes(), "blur_color_loss: y shape ", y.sizes(), " != x shape ", x.sizes());
  TORCH_CHECK(x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
              "blur_color_loss: x has an empty dimension: shape ", x.sizes());
  TORCH_CHECK(ksize >= 1 && ksize <= lowlight::kMaxKsize && ksize % 2 == 1,
              "blur_color_loss: ksize must be odd in [1, ", lowlight::kMaxKsize, "], got ", ksize);
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0, "blur_color_loss: sigma must be a finite number > 0, got ", sigma);
}

at::Tensor blur_color_loss_cpu(const at::Tensor& x_in, const at::Tensor& y_in, double sigma, int64_t ksize) {
  check_inputs(x_in, y_in, sigma, ksize);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "blur_color_loss_cpu", [&] {
    const std::vector<scalar_t> g = gaussian_weights<scalar_t>(sigma, ksize);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const int64_t bands = blur_bands(planes, H, ksize);
    std::vector<double> partial(planes * bands, 0.0);
    for_each_blur_band<scalar_t>(planes, bands, H, W, ksize, g.data(), false,
                                 [&](int64_t task, int64_t p, int64_t i0, int64_t i1, Blurrer<scalar_t>& b) {
                                   partial[task] = b.forward_band(xp + p * H * W, yp + p * H * W, i0, i1);
                                 });
    for (double s : partial) total += s;  // fixed order: the result does not depend on scheduling
  });
  // B == 0: 0 / 0 = nan, like the mean of an empty tensor.
  return at::scalar_tensor(total / static_cast<double>(x.numel()), x.options());
}

at::Tensor blur_color_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& y_in,
                                        double sigma, int64_t ksize) {
  check_inputs(x_in, y_in, sigma, ksize);
  TORCH_CHECK(grad.numel() == 1, "blur_color_loss_backward: grad must be a scalar, got shape ", grad.sizes());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  at::Tensor gx = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return gx;
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const double scale = grad.item<double>() * 2.0 / static_cast<double>(x.numel());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "blur_color_loss_backward_cpu", [&] {
    const std::vector<scalar_t> g = gaussian_weights<scalar_t>(sigma, ksize);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* gp = gx.mutable_data_ptr<scalar_t>();
    for_each_blur_band<scalar_t>(planes, blur_bands(planes, H, ksize), H, W, ksize, g.data(), true,
                                 [&](int64_t, int64_t p, int64_t i0, int64_t i1, Blurrer<scalar_t>& b) {
                                   const int64_t off = p * H * W;
                                   b.backward_band(xp + off, yp + off, gp + off, i0, i1,
                                                   static_cast<scalar_t>(scale));
                                 });
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) {
  m.impl("blur_color_loss", &blur_color_loss_cpu);
  m.impl("blur_color_loss_backward", &blur_color_loss_backward_cpu);
}
