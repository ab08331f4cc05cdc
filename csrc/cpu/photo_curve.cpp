// CPU kernels of the photo path: lowlight::photo_curve, lowlight::photo_value_curve and lowlight::area_reduce.
//
// photo_curve: y = clamp(LE^n(x), 0, 1) on an image in its own dtype (uint8, uint16, float32, float64) and
// layout, in one pass: each value is read once, converted and scaled in registers, curved with alpha lerped
// exactly as le_curve does (low-res rows expanded horizontally once per thread, a vertical lerp per value),
// clamped, scaled, rounded to nearest even and written in the same dtype. No full-size float temporary.
// An H x W x C photo (channels_last) is processed as interleaved rows of W*C values: the alpha rows are
// expanded into the same interleaved order, so the vector loop is the same for both layouts. Gray images
// run the three RGB curves and average them; alpha channels are copied.
// photo_value_curve: the same pass for models that curve the value (one curve per pixel on max(r, g, b), its
// gain applied to every colour channel): the same loads, scaling, alpha expansion, rounding and stores.
// area_reduce: block means (adaptive average pooling) straight from the integer image, for the estimate.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "../limits.h"
#include "bilinear_taps.h"
#include "huge_pages.h"
#include "lanes.h"  // FloatV, load_lanes, channel_of, spread
#include "simd.h"  // LOWLIGHT_CLONES, LL_INLINE

// The curve and the rounding must be the reference's IEEE operations one by one (each product rounded):
// a fused multiply-add would move results across a rounding boundary now and then. The bilinear resize of
// alpha, on the contrary, uses explicit fused multiply-adds where ATen's AVX2 / AVX-512 kernel has them
// (w0 * t0 + w1 * t1 as fma(t0, w0, t1 * w1), and its source index), so that F.interpolate's alpha is
// reproduced bit for bit on those builds.
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace {

using lowlight::channel_of;
using lowlight::FloatV;
using lowlight::IntV;
using lowlight::kLanes;
using lowlight::kMaxIterations;
using lowlight::Lanes;
using lowlight::LinearTaps;
using lowlight::mask_of;
using lowlight::spread;

constexpr int64_t kCurveChannels = 3;          // RGB curve maps
constexpr int64_t kRowGrainValues = 65536;     // values per parallel chunk: amortizes the thread hand-off
constexpr int kUnroll = 8;  // independent vectors in flight: the n dependent steps of each are latency-bound
constexpr float kRoundMagic = 8388608.0f;      // 2^23: (t + 2^23) - 2^23 rounds 0 <= t < 2^23 to nearest even

// V is FloatV (the body of a row) or float (its tail): the same code serves both.
template <typename V, typename T>
LL_INLINE V load_float(const T* p) {
  if constexpr (std::is_same_v<V, float>) {
    return static_cast<float>(*p);
  } else {
    return lowlight::load_lanes(p);
  }
}

template <typename V>
LL_INLINE V load_alpha(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

// t0 * w0 + t1 * w1 as ATen's bilinear kernel computes it: fma(t0, w0, t1 * w1).
template <typename V>
LL_INLINE V lerp(const V& t0, float w0, const V& t1, float w1) {
  const V tail = t1 * w1;
  if constexpr (std::is_same_v<V, float>) {
    return __builtin_fmaf(t0, w0, tail);
  } else {
    V r;
    for (int i = 0; i < kLanes; ++i) r[i] = __builtin_fmaf(t0[i], w0, tail[i]);  // vectorized on FMA targets
    return r;
  }
}

// v / scale, correctly rounded like the reference's division, without a divide (16 cycles per AVX-512 vector):
// q = v * (1 / scale), then one fused correction with the exact residual v - q * scale. Checked for every
// uint8 and uint16 value (tests/test_photo.py).
template <typename V>
LL_INLINE V divide(const V& v, float scale, float inverse) {
  const V q = v * inverse;
  if constexpr (std::is_same_v<V, float>) {
    return __builtin_fmaf(__builtin_fmaf(-q, scale, v), inverse, q);
  } else {
    V r;
    for (int i = 0; i < kLanes; ++i) r[i] = __builtin_fmaf(__builtin_fmaf(-q[i], scale, v[i]), inverse, q[i]);
    return r;
  }
}

template <typename V>
LL_INLINE V clamp01(V v) {
  if constexpr (std::is_same_v<V, float>) {
    return v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
  } else {
    const V zero = {};
    const V one = zero + 1.f;
    v = v < zero ? zero : v;
    return v > one ? one : v;
  }
}

// Stores y (in [0, 1]) as T: integers scaled and rounded to nearest even, floats converted.
template <typename V, typename T>
LL_INLINE void store_result(T* p, V y, float scale) {
  if constexpr (std::is_integral_v<T>) {
    V t = y * scale;
    t = (t + kRoundMagic) - kRoundMagic;
    if constexpr (std::is_same_v<V, float>) {
      *p = static_cast<T>(static_cast<int32_t>(t));
    } else {
      const auto out = __builtin_convertvector(__builtin_convertvector(t, IntV), typename Lanes<T>::type);
      std::memcpy(p, &out, sizeof(out));
    }
  } else if constexpr (std::is_same_v<V, float>) {
    *p = static_cast<T>(y);
  } else {
    const auto out = __builtin_convertvector(y, typename Lanes<T>::type);
    std::memcpy(p, &out, sizeof(out));
  }
}

// Alpha rows of one segment: index g * maps + m (curve g of a gray value, or 0; map m) holds the two
// expanded low-res rows that the segment's row lerps between, in the segment's own value order.
struct AlphaRows {
  const float* const* lo;
  const float* const* hi;
  float w0, w1;
};

LL_INLINE int steps_of_map(int m, int maps, int n) { return m + 1 == maps ? n - m : 1; }

// U vectors of values from index j: G curves per value (3: gray, averaged; 1: a colour channel).
template <int U, typename V, int G, typename T>
LL_INLINE void photo_lanes(const T* x, T* y, const AlphaRows& a, int maps, int n, float scale, int64_t j) {
  constexpr int64_t kStep = std::is_same_v<V, float> ? 1 : kLanes;
  V x0[U], sum[U];
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) {
    x0[u] = load_float<V>(x + j + u * kStep);
    x0[u] = std::is_integral_v<T> ? divide(x0[u], scale, 1.f / scale) : clamp01(x0[u]);  // as the reference
  }
  for (int g = 0; g < G; ++g) {
    V v[U];
    _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) v[u] = x0[u];
    for (int m = 0; m < maps; ++m) {
      V am[U];
      const int r = g * maps + m;
      _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u)  // the vertical lerp of the expanded rows
        am[u] = lerp(load_alpha<V>(a.lo[r] + j + u * kStep), a.w0, load_alpha<V>(a.hi[r] + j + u * kStep), a.w1);
      for (int s = steps_of_map(m, maps, n); s > 0; --s)
        _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) v[u] = v[u] + (am[u] * v[u]) * (1.f - v[u]);
    }
    _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) sum[u] = g == 0 ? clamp01(v[u]) : sum[u] + clamp01(v[u]);
  }
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) store_result<V>(y + j + u * kStep, G == 1 ? sum[u] : sum[u] / float(G), scale);
}

template <int G, typename T>
LL_INLINE void photo_row_impl(const T* x, T* y, const AlphaRows& a, int maps, int n, float scale, int64_t len) {
  int64_t j = 0;
  for (; j + kUnroll * kLanes <= len; j += kUnroll * kLanes) photo_lanes<kUnroll, FloatV, G>(x, y, a, maps, n, scale, j);
  for (; j + kLanes <= len; j += kLanes) photo_lanes<1, FloatV, G>(x, y, a, maps, n, scale, j);
  for (; j < len; ++j) photo_lanes<1, float, G>(x, y, a, maps, n, scale, j);
}

// One segment of a row (W*C interleaved values, or the W values of one plane), per dtype and curve count:
// AVX-512 / AVX2 clones under the portable baseline build, picked at load time.
#define LL_DEFINE_PHOTO_ROW(T)                                                                              \
  LOWLIGHT_CLONES void photo_row_g1(const T* x, T* y, const AlphaRows& a, int maps, int n, float scale,   \
                                    int64_t len) {                                                         \
    photo_row_impl<1>(x, y, a, maps, n, scale, len);                                                       \
  }                                                                                                        \
  LOWLIGHT_CLONES void photo_row_g3(const T* x, T* y, const AlphaRows& a, int maps, int n, float scale,   \
                                    int64_t len) {                                                         \
    photo_row_impl<3>(x, y, a, maps, n, scale, len);                                                       \
  }

LL_DEFINE_PHOTO_ROW(uint8_t)
LL_DEFINE_PHOTO_ROW(uint16_t)
LL_DEFINE_PHOTO_ROW(float)
LL_DEFINE_PHOTO_ROW(double)

template <int G, typename T>
void photo_row(const T* x, T* y, const AlphaRows& a, int maps, int n, float scale, int64_t len) {
  if constexpr (G == 1)
    photo_row_g1(x, y, a, maps, n, scale, len);
  else
    photo_row_g3(x, y, a, maps, n, scale, len);
}

// ---------------------------------------------------------------- photo_value_curve: the row kernels

// One curve per pixel on v = max of its colour values, then every colour value times v' / max(v, 1e-6), the
// reference's float operations in its order. Planar rows have each channel's W values; interleaved rows (an
// H x W x C photo) are loaded as C vectors per 16 pixels, deinterleaved with two-source shuffles for the max
// (vpermt2ps on AVX-512) and the gain spread back to the interleaved order, so values are loaded, scaled and
// stored as they lie. Why not a gathered load or a separate deinterleaving pass: interleaved RGB measured within
// 8 % of planar rows, which need no deinterleaving at all (12 MP uint8, 1 thread: 24.4 vs 22.7 ms CPU time).
// AVX2 has no 16-lane shuffle: its clone scalarizes these (correct, slower; not measured here).

template <typename V>
LL_INLINE V max2(const V& a, const V& b) {
  return a < b ? b : a;
}

// v' / max(v, 1e-6) for U vectors of values v (in: v, out: the gain) of pixels X.. (expanded alpha rows).
template <int U, typename V>
LL_INLINE void curve_gain(V (&g)[U], const AlphaRows& a, int maps, int n, int64_t X) {
  constexpr int64_t kStep = std::is_same_v<V, float> ? 1 : kLanes;
  V v[U];
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) v[u] = g[u];
  for (int m = 0; m < maps; ++m) {
    V am[U];
    _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u)
      am[u] = lerp(load_alpha<V>(a.lo[m] + X + u * kStep), a.w0, load_alpha<V>(a.hi[m] + X + u * kStep), a.w1);
    for (int s = steps_of_map(m, maps, n); s > 0; --s)
      _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) v[u] = v[u] + (am[u] * v[u]) * (1.f - v[u]);
  }
  const V eps = V{} + 1e-6f;
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) g[u] = v[u] / max2(g[u], eps);
}

template <typename V, typename T>
LL_INLINE V load_scaled(const T* p, float scale) {  // as the reference: x / scale, floats clamped
  const V x = load_float<V>(p);
  return std::is_integral_v<T> ? divide(x, scale, 1.f / scale) : clamp01(x);
}

// A row of pixels: colour plane pointers (planar: K planes; interleaved: x[0], y[0] the row of W*C values).
template <typename T>
struct ValueRow {
  const T* x[3];
  T* y[3];
};

// U vectors (or one scalar pixel) of planar pixels from X; K colour planes.
template <int U, typename V, int K, typename T>
LL_INLINE void value_planar(const ValueRow<T>& r, const AlphaRows& a, int maps, int n, float scale, int64_t X) {
  constexpr int64_t kStep = std::is_same_v<V, float> ? 1 : kLanes;
  V x[K][U], g[U];
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) {
    _Pragma("GCC unroll 4") for (int c = 0; c < K; ++c) x[c][u] = load_scaled<V>(r.x[c] + X + u * kStep, scale);
    g[u] = x[0][u];
    _Pragma("GCC unroll 4") for (int c = 1; c < K; ++c) g[u] = max2(g[u], x[c][u]);
  }
  curve_gain<U>(g, a, maps, n, X);
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) _Pragma("GCC unroll 4") for (int c = 0; c < K; ++c)
    store_result<V>(r.y[c] + X + u * kStep, clamp01(x[c][u] * g[u]), scale);
}

// One interleaved pixel X (the tail of a row): C values, K of them colour; integer alpha values copied.
template <int C, int K, typename T>
LL_INLINE void value_pixel(const ValueRow<T>& r, const AlphaRows& a, int maps, int n, float scale, int64_t X) {
  float x[K], g[1];
  for (int c = 0; c < K; ++c) x[c] = load_scaled<float>(r.x[0] + X * C + c, scale);
  g[0] = x[0];
  for (int c = 1; c < K; ++c) g[0] = max2(g[0], x[c]);
  curve_gain<1>(g, a, maps, n, X);
  for (int c = 0; c < K; ++c) store_result<float>(r.y[0] + X * C + c, clamp01(x[c] * g[0]), scale);
  if constexpr (std::is_integral_v<T>)
    for (int c = K; c < C; ++c) r.y[0][X * C + c] = r.x[0][X * C + c];
}

// Integer images: y with its alpha lanes (channel l % C >= K; 16 % C == 0 for C = 2 and 4, so every vector
// has the same ones) replaced by the scaled input x, whose stored result round((x / s) * s) is x for every
// integer x <= 65535 (the relative error of x / s is below 2^-24): alpha is kept by the vector stores, without
// a strided copy of it afterwards.
template <int C, int K>
LL_INLINE FloatV keep_alpha(const FloatV& y, const FloatV& x) {
  static_assert(kLanes % C == 0);
  constexpr IntV alpha = mask_of([](int l) { return l % C >= K ? -1 : 0; });
  return alpha ? x : y;
}

// U groups of 16 interleaved pixels from X. Alpha lanes (C > K) are kept (integers) or written and copied over
// afterwards (floats: their scaled input is clamped).
template <int U, int C, int K, typename T>
LL_INLINE void value_interleaved(const ValueRow<T>& r, const AlphaRows& a, int maps, int n, float scale, int64_t X) {
  FloatV x[U][C], g[U];
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) {
    _Pragma("GCC unroll 4") for (int i = 0; i < C; ++i)
      x[u][i] = load_scaled<FloatV>(r.x[0] + (X + u * kLanes) * C + i * kLanes, scale);
    g[u] = channel_of<C, 0>(x[u]);
    if constexpr (K == 3) g[u] = max2(max2(g[u], channel_of<C, 1>(x[u])), channel_of<C, 2>(x[u]));
  }
  curve_gain<U>(g, a, maps, n, X);
  _Pragma("GCC unroll 16") for (int u = 0; u < U; ++u) {
    T* y = r.y[0] + (X + u * kLanes) * C;
    FloatV out[C];
    out[0] = clamp01(x[u][0] * spread<C, 0>(g[u]));
    out[1] = clamp01(x[u][1] * spread<C, 1>(g[u]));
    if constexpr (C >= 3) out[2] = clamp01(x[u][2] * spread<C, 2>(g[u]));
    if constexpr (C >= 4) out[3] = clamp01(x[u][3] * spread<C, 3>(g[u]));
    _Pragma("GCC unroll 4") for (int i = 0; i < C; ++i) {
      if constexpr (C > K && std::is_integral_v<T>) out[i] = keep_alpha<C, K>(out[i], x[u][i]);
      store_result<FloatV>(y + i * kLanes, out[i], scale);
    }
  }
}

// Row layouts: planar with 1 or 3 colour planes; interleaved gray + alpha, RGB, RGBA.
enum class ValueLayout { kPlanar1, kPlanar3, kInterleaved2, kInterleaved3, kInterleaved4 };

// Pixel vectors in flight: the n dependent steps are latency-bound. Measured (12 MP uint8, 1 thread, n = 8, CPU
// time): 4 -> 8 took interleaved RGB from 26.3 to 24.4 ms and planar from 24.5 to 22.7 ms.
constexpr int kValueUnroll = 8;

template <int K, typename T>
LL_INLINE void value_row_planar(const ValueRow<T>& r, const AlphaRows& a, int maps, int n, float scale, int64_t W) {
  int64_t X = 0;
  for (; X + kValueUnroll * kLanes <= W; X += kValueUnroll * kLanes)
    value_planar<kValueUnroll, FloatV, K>(r, a, maps, n, scale, X);
  for (; X + kLanes <= W; X += kLanes) value_planar<1, FloatV, K>(r, a, maps, n, scale, X);
  for (; X < W; ++X) value_planar<1, float, K>(r, a, maps, n, scale, X);
}

template <int C, int K, typename T>
LL_INLINE void value_row_interleaved(const ValueRow<T>& r, const AlphaRows& a, int maps, int n, float scale,
                                     int64_t W) {
  int64_t X = 0;
  for (; X + kValueUnroll * kLanes <= W; X += kValueUnroll * kLanes)
    value_interleaved<kValueUnroll, C, K>(r, a, maps, n, scale, X);
  for (; X + kLanes <= W; X += kLanes) value_interleaved<1, C, K>(r, a, maps, n, scale, X);
  for (; X < W; ++X) value_pixel<C, K>(r, a, maps, n, scale, X);
}

template <typename T>
LL_INLINE void value_row_impl(ValueLayout layout, const ValueRow<T>& r, const AlphaRows& a, int maps, int n,
                              float scale, int64_t W) {
  switch (layout) {
    case ValueLayout::kPlanar1: return value_row_planar<1>(r, a, maps, n, scale, W);
    case ValueLayout::kPlanar3: return value_row_planar<3>(r, a, maps, n, scale, W);
    case ValueLayout::kInterleaved2: return value_row_interleaved<2, 1>(r, a, maps, n, scale, W);
    case ValueLayout::kInterleaved3: return value_row_interleaved<3, 3>(r, a, maps, n, scale, W);
    case ValueLayout::kInterleaved4: return value_row_interleaved<4, 3>(r, a, maps, n, scale, W);
  }
}

#define LL_DEFINE_VALUE_ROW(T)                                                                              \
  LOWLIGHT_CLONES void value_row(ValueLayout layout, const ValueRow<T>& r, const AlphaRows& a, int maps,  \
                                 int n, float scale, int64_t W) {                                          \
    value_row_impl(layout, r, a, maps, n, scale, W);                                                       \
  }

LL_DEFINE_VALUE_ROW(uint8_t)
LL_DEFINE_VALUE_ROW(uint16_t)
LL_DEFINE_VALUE_ROW(float)
LL_DEFINE_VALUE_ROW(double)

// ---------------------------------------------------------------- shapes, layouts and checks

enum class Rows { kNone, kPlanar, kInterleaved };

// How a (B, C, H, W) tensor's rows lie in memory: planar (each channel's row is W contiguous values), or
// interleaved (an H x W x C photo: each row is W*C contiguous values). Batch and row strides are free.
Rows rows_of(const at::Tensor& t) {
  if (t.stride(3) == 1 || t.size(3) == 1) return Rows::kPlanar;
  if (t.stride(1) == 1 && t.stride(3) == t.size(1)) return Rows::kInterleaved;
  return Rows::kNone;
}

// Calls f(T{}) with T the C++ type of an image dtype the kernels take.
template <typename F>
void dispatch_image_dtype(const char* op, at::ScalarType t, F&& f) {
  switch (t) {
    case at::kByte: return f(uint8_t{});
    case at::kUInt16: return f(uint16_t{});
    case at::kFloat: return f(float{});
    case at::kDouble: return f(double{});
    default: TORCH_CHECK(false, op, ": image must be uint8, uint16, float32 or float64, got ", t);
  }
}

struct PhotoShape {
  int64_t B, C, H, W, h, w, k;
  int n, color;
  bool interleaved;
  bool value = false;  // photo_value_curve: one alpha channel per map, one curve per pixel
  int maps() const { return static_cast<int>(std::min<int64_t>(k, n)); }
  int curves() const { return color == 1 ? 3 : 1; }  // curves per value: gray runs all three
  int64_t segment() const { return interleaved ? W * C : W; }
  // expanded alpha rows per map: one interleaved row per curve, one planar row per alpha channel, or (value)
  // one row of W pixels
  int64_t sets() const { return value ? 1 : interleaved ? curves() : kCurveChannels; }
  int64_t map_channels() const { return value ? 1 : kCurveChannels; }
  int64_t expanded() const { return value ? W : segment(); }  // values per expanded alpha row
};

void check_photo_inputs(const at::Tensor& image, const at::Tensor& alpha, int64_t iterations, bool value = false) {
  const char* op = value ? "photo_value_curve" : "photo_curve";
  TORCH_CHECK(image.dim() == 4, op, ": image must be 4-D (B, C, H, W), got ", image.dim(), "-D");
  TORCH_CHECK(alpha.dim() == 4, op, ": alpha must be 4-D (B, ", value ? "k" : "3*k", ", h, w), got ", alpha.dim(),
              "-D");
  const auto t = image.scalar_type();
  TORCH_CHECK(t == at::kByte || t == at::kUInt16 || t == at::kFloat || t == at::kDouble, op,
              ": image must be uint8, uint16, float32 or float64, got ", t);
  TORCH_CHECK(alpha.scalar_type() == at::kFloat, op, ": alpha must be float32, got ", alpha.scalar_type());
  TORCH_CHECK(alpha.device() == image.device(), op, ": alpha is on ", alpha.device(), " but image is on ",
              image.device());
  TORCH_CHECK(iterations >= 1 && iterations <= kMaxIterations, op, ": iterations must be in [1, ",
              kMaxIterations, "], got ", iterations);
  TORCH_CHECK(image.size(1) >= 1 && image.size(1) <= 4, op, ": image must have 1-4 channels, got ", image.size(1));
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1, op, ": image has an empty dimension: ", image.sizes());
  TORCH_CHECK(alpha.size(2) >= 1 && alpha.size(3) >= 1, op, ": alpha has an empty dimension: ", alpha.sizes());
  TORCH_CHECK(alpha.size(0) == image.size(0), op, ": alpha batch ", alpha.size(0), " != image batch ",
              image.size(0));
  if (value) {
    TORCH_CHECK(alpha.size(1) >= 1, op, ": alpha must have k >= 1 channels (one map per step), got ", alpha.size(1));
  } else {
    TORCH_CHECK(alpha.size(1) >= kCurveChannels && alpha.size(1) % kCurveChannels == 0, op,
                ": alpha must have 3*k channels (RGB curve maps, k>=1), got ", alpha.size(1));
  }
}

// Per-thread cache of expanded (full-width) low-res alpha rows, two slots (the rows an output row lerps
// between), laid out [map][set][segment] in the segment's value order (unused interleaved lanes are 0); for
// photo_value_curve [map][pixel].
struct ExpandedRows {
  const PhotoShape& s;
  const float* alpha;
  const LinearTaps<float>& htaps;
  std::vector<float> buf;
  int64_t key[2] = {-1, -1};  // (b * h + low-res row) held by each slot

  ExpandedRows(const PhotoShape& s_, const float* alpha_, const LinearTaps<float>& htaps_)
      : s(s_), alpha(alpha_), htaps(htaps_), buf(2 * s_.maps() * s_.sets() * s_.expanded(), 0.f) {}

  float* slot_ptr(int slot) { return buf.data() + slot * s.maps() * s.sets() * s.expanded(); }

  const float* get(int64_t b, int64_t r, const float* keep) {
    const int64_t want = b * s.h + r;
    for (int slot = 0; slot < 2; ++slot)
      if (key[slot] == want) return slot_ptr(slot);
    const int slot = slot_ptr(0) == keep ? 1 : 0;
    float* dst = slot_ptr(slot);
    for (int64_t m = 0; m < s.maps(); ++m) {
      for (int64_t set = 0; set < s.sets(); ++set) {
        float* row = dst + (m * s.sets() + set) * s.expanded();
        // interleaved colour: the three channels into one row (lane c); otherwise alpha channel `set`
        const bool interleave = s.interleaved && !s.value;
        const bool rgb_row = interleave && s.color == 3;
        for (int64_t c = 0; c < (rgb_row ? kCurveChannels : 1); ++c) {
          const int64_t channel = rgb_row ? c : set;
          const float* src = alpha + (((b * s.k + m) * s.map_channels() + channel) * s.h + r) * s.w;
          const int64_t stride = interleave ? s.C : 1;
          for (int64_t o = 0; o < s.W; ++o)
            row[o * stride + c] = lerp(src[htaps.i0[o]], htaps.w0[o], src[htaps.i1[o]], htaps.w1[o]);
        }
      }
    }
    key[slot] = want;
    return dst;
  }
};

template <int G, typename T>
void photo_forward(const PhotoShape& s, const at::Tensor& image, const float* alpha, at::Tensor& out) {
  const T* x = image.const_data_ptr<T>();
  T* y = out.mutable_data_ptr<T>();
  const int64_t xb = image.stride(0), xc = image.stride(1), xh = image.stride(2);
  const int64_t yb = out.stride(0), yc = out.stride(1), yh = out.stride(2);
  const float scale = std::is_same_v<T, uint8_t> ? 255.f : std::is_same_v<T, uint16_t> ? 65535.f : 1.f;
  const LinearTaps<float> vtaps(s.h, s.H, true), htaps(s.w, s.W, true);
  const int maps = s.maps();
  const int64_t grain = std::max<int64_t>(1, kRowGrainValues / (s.W * s.C));
  at::parallel_for(0, s.B * s.H, grain, [&](int64_t begin, int64_t end) {
    ExpandedRows cache(s, alpha, htaps);
    const float* lo[3 * kMaxIterations];
    const float* hi[3 * kMaxIterations];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.H, Y = row % s.H;
      const float* e0 = cache.get(b, vtaps.i0[Y], nullptr);
      const float* e1 = cache.get(b, vtaps.i1[Y], e0);
      const AlphaRows a{lo, hi, vtaps.w0[Y], vtaps.w1[Y]};
      const T* xr = x + b * xb + Y * xh;
      T* yr = y + b * yb + Y * yh;
      // segment c: the interleaved row (c = 0 only) or colour plane c
      for (int64_t c = 0; c < (s.interleaved ? 1 : s.color); ++c) {
        for (int g = 0; g < G; ++g) {
          for (int m = 0; m < maps; ++m) {
            const int64_t set = s.interleaved ? g : (G == 1 ? c : g);
            lo[g * maps + m] = e0 + (m * s.sets() + set) * s.segment();
            hi[g * maps + m] = e1 + (m * s.sets() + set) * s.segment();
          }
        }
        photo_row<G>(xr + c * xc, yr + c * yc, a, maps, s.n, scale, s.segment());
      }
      for (int64_t c = s.color; c < s.C; ++c) {  // alpha channels: copied
        if (s.interleaved) {
          for (int64_t X = 0; X < s.W; ++X) yr[X * s.C + c] = xr[X * s.C + c];
        } else {
          std::memcpy(yr + c * yc, xr + c * xc, s.W * sizeof(T));
        }
      }
    }
  });
}

// Image and output must lie in rows of the same kind; anything else runs on dense copies (odd views).
struct PhotoIO {
  at::Tensor image, target;  // what the kernel reads and writes (target: out, or a dense stand-in)
  bool interleaved;
};

PhotoIO photo_io(const at::Tensor& image_in, const at::Tensor& out) {
  Rows kind = rows_of(out);
  PhotoIO io{image_in, out, false};
  lowlight::advise_huge_pages(out);
  if (kind == Rows::kNone) {
    io.target = at::empty(out.sizes(), out.options());
    lowlight::advise_huge_pages(io.target);
    kind = Rows::kPlanar;
  }
  io.interleaved = kind == Rows::kInterleaved;
  if (rows_of(io.image) != kind)
    io.image = io.image.contiguous(io.interleaved ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  return io;
}

at::Tensor photo_curve_cpu(const at::Tensor& image_in, const at::Tensor& alpha_in, int64_t iterations) {
  check_photo_inputs(image_in, alpha_in, iterations);
  at::Tensor out = at::empty_like(image_in);  // the fake kernel's rule: same dtype and memory layout
  if (out.numel() == 0) return out;
  auto [image, target, interleaved] = photo_io(image_in, out);
  const at::Tensor alpha = alpha_in.contiguous();
  const PhotoShape s{image.size(0), image.size(1), image.size(2), image.size(3), alpha.size(2), alpha.size(3),
                     alpha.size(1) / kCurveChannels, static_cast<int>(iterations), image.size(1) <= 2 ? 1 : 3,
                     interleaved};
  dispatch_image_dtype("photo_curve", image.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    if (s.color == 1)
      photo_forward<3, T>(s, image, alpha.const_data_ptr<float>(), target);
    else
      photo_forward<1, T>(s, image, alpha.const_data_ptr<float>(), target);
  });
  if (!target.is_same(out)) out.copy_(target);
  return out;
}

// ---------------------------------------------------------------- photo_value_curve

template <typename T>
void value_forward(const PhotoShape& s, const at::Tensor& image, const float* alpha, at::Tensor& out) {
  const T* x = image.const_data_ptr<T>();
  T* y = out.mutable_data_ptr<T>();
  const int64_t xb = image.stride(0), xc = image.stride(1), xh = image.stride(2);
  const int64_t yb = out.stride(0), yc = out.stride(1), yh = out.stride(2);
  const float scale = std::is_same_v<T, uint8_t> ? 255.f : std::is_same_v<T, uint16_t> ? 65535.f : 1.f;
  const LinearTaps<float> vtaps(s.h, s.H, true), htaps(s.w, s.W, true);
  const int maps = s.maps();
  const ValueLayout layout = !s.interleaved ? (s.color == 1 ? ValueLayout::kPlanar1 : ValueLayout::kPlanar3)
                             : s.C == 2     ? ValueLayout::kInterleaved2
                             : s.C == 3     ? ValueLayout::kInterleaved3
                                            : ValueLayout::kInterleaved4;
  const int64_t grain = std::max<int64_t>(1, kRowGrainValues / (s.W * s.C));
  at::parallel_for(0, s.B * s.H, grain, [&](int64_t begin, int64_t end) {
    ExpandedRows cache(s, alpha, htaps);
    const float* lo[kMaxIterations];
    const float* hi[kMaxIterations];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.H, Y = row % s.H;
      const float* e0 = cache.get(b, vtaps.i0[Y], nullptr);
      const float* e1 = cache.get(b, vtaps.i1[Y], e0);
      for (int m = 0; m < maps; ++m) lo[m] = e0 + m * s.W, hi[m] = e1 + m * s.W;
      const T* xr = x + b * xb + Y * xh;
      T* yr = y + b * yb + Y * yh;
      ValueRow<T> r{};
      for (int c = 0; c < (s.interleaved ? 1 : s.color); ++c) r.x[c] = xr + c * xc, r.y[c] = yr + c * yc;
      value_row(layout, r, AlphaRows{lo, hi, vtaps.w0[Y], vtaps.w1[Y]}, maps, s.n, scale, s.W);
      if (s.interleaved && std::is_integral_v<T>) continue;  // alpha kept by the row kernel
      for (int64_t c = s.color; c < s.C; ++c) {  // alpha channels: copied (over what the vector stores wrote)
        if (s.interleaved) {
          for (int64_t X = 0; X < s.W; ++X) yr[X * s.C + c] = xr[X * s.C + c];
        } else {
          std::memcpy(yr + c * yc, xr + c * xc, s.W * sizeof(T));
        }
      }
    }
  });
}

at::Tensor photo_value_curve_cpu(const at::Tensor& image_in, const at::Tensor& alpha_in, int64_t iterations) {
  check_photo_inputs(image_in, alpha_in, iterations, /*value=*/true);
  at::Tensor out = at::empty_like(image_in);  // the fake kernel's rule: same dtype and memory layout
  if (out.numel() == 0) return out;
  auto [image, target, interleaved] = photo_io(image_in, out);
  const at::Tensor alpha = alpha_in.contiguous();
  const PhotoShape s{image.size(0), image.size(1), image.size(2), image.size(3), alpha.size(2), alpha.size(3),
                     alpha.size(1), static_cast<int>(iterations), image.size(1) <= 2 ? 1 : 3, interleaved,
                     /*value=*/true};
  dispatch_image_dtype("photo_value_curve", image.scalar_type(), [&](auto tag) {
    value_forward<decltype(tag)>(s, image, alpha.const_data_ptr<float>(), target);
  });
  if (!target.is_same(out)) out.copy_(target);
  return out;
}

// ---------------------------------------------------------------- area_reduce

// Output row i of plane rows: input rows [floor(i H / h), ceil((i + 1) H / h)), as adaptive_avg_pool2d.
inline int64_t block_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t block_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// acc[e] += x[e] over one row: vectorized clones (int64 sums of integers, double sums of floats).
#define LL_DEFINE_ACCUMULATE(T, Acc)                                                      \
  LOWLIGHT_CLONES void accumulate_row(const T* x, Acc* acc, int64_t len) {              \
    for (int64_t e = 0; e < len; ++e) acc[e] += static_cast<Acc>(x[e]);                   \
  }
LL_DEFINE_ACCUMULATE(uint8_t, int64_t)
LL_DEFINE_ACCUMULATE(uint16_t, int64_t)
LL_DEFINE_ACCUMULATE(float, double)
LL_DEFINE_ACCUMULATE(double, double)

// out[o] = sums[o] / (rows * widths[o]) in double, cast to float: the means of one output row (vectorized).
LOWLIGHT_CLONES void divide_row(const double* sums, const int64_t* widths, int64_t rows, float* out, int64_t n) {
  for (int64_t o = 0; o < n; ++o) out[o] = static_cast<float>(sums[o] / static_cast<double>(rows * widths[o]));
}

// Block sums: the block's rows summed vertically into one row (exact integer sums, or double), then each
// output pixel's columns summed; the mean is sum / count in double, cast to float. Parallel over
// (image, output row); a row shared by two blocks is read by both.
template <typename T>
void area_reduce_impl(const at::Tensor& image, int64_t oh, int64_t ow, float* out) {
  using Acc = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
  const int64_t B = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
  const bool interleaved = rows_of(image) == Rows::kInterleaved;
  const int64_t seg = interleaved ? W * C : W;
  const T* x = image.const_data_ptr<T>();
  const int64_t xb = image.stride(0), xc = image.stride(1), xh = image.stride(2);
  std::vector<int64_t> x0(ow), widths(ow);  // each output column's block of input columns
  for (int64_t o = 0; o < ow; ++o) {
    x0[o] = block_start(o, W, ow);
    widths[o] = block_end(o, W, ow) - x0[o];
  }
  at::parallel_for(0, B * oh, 1, [&](int64_t begin, int64_t end) {
    std::vector<Acc> acc((interleaved ? 1 : C) * seg);
    std::vector<double> sums(ow);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / oh, i = task % oh;
      const int64_t y0 = block_start(i, H, oh), y1 = block_end(i, H, oh);
      std::fill(acc.begin(), acc.end(), Acc(0));
      for (int64_t Y = y0; Y < y1; ++Y) {
        for (int64_t c = 0; c < (interleaved ? 1 : C); ++c) {
          accumulate_row(x + b * xb + Y * xh + c * xc, acc.data() + c * seg, seg);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        const Acc* ar = interleaved ? acc.data() + c : acc.data() + c * seg;
        const int64_t step = interleaved ? C : 1;
        for (int64_t o = 0; o < ow; ++o) {
          Acc sum = 0;
          for (int64_t X = x0[o]; X < x0[o] + widths[o]; ++X) sum += ar[X * step];
          sums[o] = static_cast<double>(sum);
        }
        divide_row(sums.data(), widths.data(), y1 - y0, out + ((b * C + c) * oh + i) * ow, ow);
      }
    }
  });
}

at::Tensor area_reduce_cpu(const at::Tensor& image_in, int64_t height, int64_t width) {
  const char* op = "area_reduce";
  TORCH_CHECK(image_in.dim() == 4, op, ": image must be 4-D (B, C, H, W), got ", image_in.dim(), "-D");
  const auto t = image_in.scalar_type();
  TORCH_CHECK(image_in.size(1) >= 1 && image_in.size(2) >= 1 && image_in.size(3) >= 1, op,
              ": image has an empty dimension: ", image_in.sizes());
  TORCH_CHECK(height >= 1 && width >= 1, op, ": the output size must be positive, got ", height, " x ", width);
  at::Tensor out = at::empty({image_in.size(0), image_in.size(1), height, width}, image_in.options().dtype(at::kFloat));
  lowlight::advise_huge_pages(out);
  if (out.numel() == 0) return out;
  const at::Tensor image = rows_of(image_in) == Rows::kNone ? image_in.contiguous() : image_in;
  dispatch_image_dtype(op, t, [&](auto tag) {
    area_reduce_impl<decltype(tag)>(image, height, width, out.mutable_data_ptr<float>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) {
  m.impl("photo_curve", &photo_curve_cpu);
  m.impl("photo_value_curve", &photo_value_curve_cpu);
  m.impl("area_reduce", &area_reduce_cpu);
}
