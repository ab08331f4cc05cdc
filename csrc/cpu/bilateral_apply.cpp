// CPU kernel of lowlight::bilateral_apply: a bilateral grid of affine colour transforms (HDRNet) applied to an
// image in its own dtype (uint8, uint16, float16, bfloat16, float32, float64) and memory layout, in one pass.
//
// Each row of the image is walked in chunks of kChunk pixels: the chunk's colour values are converted into three
// small per-thread float arrays (L1-resident, never a float copy of the image), sliced and applied there, and the
// results rounded and written back in the image's dtype through its own strides. The grid is tiny
// (B x 12 x D x Gh x Gw, e.g. 12 x 8 x 16 x 16): per row it is lerped once in y into a table of every x cell's
// 12 coefficients at every depth, with their differences to the next x cell and to the next depth; per column
// the x taps are precomputed; per pixel only the guidance, its depth and two lerps per coefficient remain:
// a = (t + wx dx) + wz (dt + wx ddx), all four at the pixel's lower depth. With D <= 16 a table holds one cell's
// depths in the lanes of one vector, so the depth lookup of 16 pixels is one in-register permute (vpermps on
// AVX-512) instead of a gather. H x W x 3 rows are deinterleaved and interleaved with shuffles (lanes.h).
// Math in float32 like the reference (float64 images: in float64, as the reference keeps them); the trilinear
// weights are applied as nested lerps (y, then x, then depth) rather than grid_sample's eight products, so a
// float result may differ from the reference in the last bits, and an integer one by 1 level at a rounding tie.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../bilateral_apply.h"
#include "huge_pages.h"
#include "lanes.h"  // FloatV, load_lanes, channel_of, interleave3
#include "simd.h"   // LOWLIGHT_CLONES, LL_INLINE

// The reference's IEEE operations one by one: a fused multiply-add would move integer results across a rounding
// boundary more often.
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace {

using lowlight::FloatV;
using lowlight::IntV;
using lowlight::kLanes;  // pixels per vector

constexpr int64_t kCoeffs = lowlight::kGridCoeffs;
// A row table's parts per x cell and coefficient: the value t, dx = t(next cell) - t, dt = t(next depth) - t,
// ddx = dt(next cell) - dt (see RowTable)
enum Part { kValue, kNextCell, kNextDepth, kBoth, kParts };
constexpr int64_t kChunk = 256;          // pixels staged per step: 3 float arrays of 1 KB stay in L1
constexpr int64_t kRowGrainValues = 65536;  // values per parallel task: amortizes the thread hand-off
constexpr float kRoundMagic = 8388608.f;    // 2^23: (t + 2^23) - 2^23 rounds 0 <= t < 2^23 to nearest even

// One axis of grid_sample (align_corners=False, padding border) at output index o of n: the reference's pixel
// centre (2 o + 1) / n - 1 in A, unnormalized to ((c + 1) cells - 1) / 2, clamped to [0, cells - 1].
template <typename A>
struct AxisTaps {
  std::vector<int32_t> i0;
  std::vector<A> w0, w1;  // weights of cell i0 and of cell min(i0 + 1, cells - 1)

  AxisTaps(int64_t n, int64_t cells) : i0(n), w0(n), w1(n) {
    for (int64_t o = 0; o < n; ++o) {
      const A c = (static_cast<A>(o) * A(2) + A(1)) / static_cast<A>(n) - A(1);
      A s = ((c + A(1)) * static_cast<A>(cells) - A(1)) / A(2);
      s = std::min(std::max(s, A(0)), static_cast<A>(cells - 1));
      i0[o] = static_cast<int32_t>(std::floor(s));
      w1[o] = s - static_cast<A>(i0[o]);
      w0[o] = static_cast<A>(i0[o] + 1) - s;
    }
  }
};

template <typename T>
constexpr float scale_of() {
  return std::is_same_v<T, uint8_t> ? 255.f : std::is_same_v<T, uint16_t> ? 65535.f : 0.f;
}

template <typename A>
LL_INLINE A clamp01(A v) {
  return v < A(0) ? A(0) : (v > A(1) ? A(1) : v);
}

// The layout of a row: pixel stride PS and channel stride CS, compile-time when > 0 (planar: PS = 1; an
// H x W x C photo: PS = C, CS = 1), else the runtime strides ps, cs.
template <int PS, int CS>
struct Strides {
  int64_t ps, cs;
  LL_INLINE int64_t at(int64_t i, int64_t c) const { return i * (PS > 0 ? PS : ps) + c * (CS > 0 ? CS : cs); }
};

LL_INLINE FloatV load_v(const float* p) {
  FloatV v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

LL_INLINE IntV load_iv(const int32_t* p) {
  IntV v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

LL_INLINE void store_v(float* p, FloatV v) { std::memcpy(p, &v, sizeof(v)); }

LL_INLINE FloatV clamp01v(FloatV v) {
  const FloatV zero = {};
  const FloatV one = zero + 1.f;
  v = v < zero ? zero : v;
  return v > one ? one : v;
}

// H x W x 3 rows of these dtypes are loaded and stored 16 pixels (3 vectors) at a time, deinterleaved by shuffles.
template <typename T, typename A, int PS, int CS>
constexpr bool kVectorRgb = std::is_same_v<A, float> && PS == 3 && CS == 1 &&
                            (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> || std::is_same_v<T, float>);

// The chunk's colour values as A in [0, 1] (integers divided by their scale, floats clamped), as the reference.
template <typename T, typename A, int PS, int CS>
LL_INLINE void load_chunk(const T* x, Strides<PS, CS> st, int color, int64_t n, A* const* v) {
  constexpr float scale = scale_of<T>();
  int64_t start = 0;
  if constexpr (kVectorRgb<T, A, PS, CS>) {
    for (; start + kLanes <= n; start += kLanes) {
      const FloatV raw[3] = {lowlight::load_lanes(x + 3 * start), lowlight::load_lanes(x + 3 * start + kLanes),
                             lowlight::load_lanes(x + 3 * start + 2 * kLanes)};
      const FloatV rgb[3] = {lowlight::channel_of<3, 0>(raw), lowlight::channel_of<3, 1>(raw),
                             lowlight::channel_of<3, 2>(raw)};
      for (int c = 0; c < 3; ++c) store_v(v[c] + start, scale > 0.f ? rgb[c] / scale : clamp01v(rgb[c]));
    }
  }
  for (int c = 0; c < color; ++c) {
    A* out = v[c];
    for (int64_t i = start; i < n; ++i) {
      const A t = static_cast<A>(x[st.at(i, c)]);
      out[i] = scale > 0.f ? t / A(scale) : clamp01(t);
    }
  }
}

// The chunk's results (in [0, 1]) written as T: integers scaled and rounded to nearest even; alpha copied.
template <typename T, typename A, int PS, int CS>
LL_INLINE void store_chunk(const T* x, Strides<PS, CS> xst, T* y, Strides<PS, CS> yst, int color, int channels,
                           int64_t n, A* const* v) {
  constexpr float scale = scale_of<T>();
  int64_t start = 0;
  if constexpr (kVectorRgb<T, A, PS, CS>) {
    for (; start + kLanes <= n; start += kLanes) {
      FloatV rgb[3] = {load_v(v[0] + start), load_v(v[1] + start), load_v(v[2] + start)};
      if constexpr (std::is_integral_v<T>)
        for (int c = 0; c < 3; ++c) rgb[c] = (rgb[c] * scale + kRoundMagic) - kRoundMagic;
      const FloatV out[3] = {lowlight::interleave3<0>(rgb), lowlight::interleave3<1>(rgb),
                             lowlight::interleave3<2>(rgb)};
      for (int q = 0; q < 3; ++q) {
        typename lowlight::Lanes<T>::type lanes;
        if constexpr (std::is_integral_v<T>)
          lanes = __builtin_convertvector(__builtin_convertvector(out[q], IntV), typename lowlight::Lanes<T>::type);
        else
          lanes = __builtin_convertvector(out[q], typename lowlight::Lanes<T>::type);
        std::memcpy(y + 3 * start + q * kLanes, &lanes, sizeof(lanes));
      }
    }
  }
  for (int c = 0; c < color; ++c) {
    const A* in = v[c];
    for (int64_t i = start; i < n; ++i) {
      if constexpr (std::is_integral_v<T>)
        y[yst.at(i, c)] = static_cast<T>(static_cast<int32_t>((in[i] * A(scale) + kRoundMagic) - kRoundMagic));
      else
        y[yst.at(i, c)] = static_cast<T>(in[i]);
    }
  }
  for (int c = color; c < channels; ++c)
    for (int64_t i = 0; i < n; ++i) y[yst.at(i, c)] = x[xst.at(i, c)];
}

// The grid lerped in y for one row: part p (Part) of coefficient k of x cell c at depth d is
// tab[((c * kParts + p) * 12 + k) * depth_stride + d]; differences past the last cell or depth are 0.
struct RowTable {
  int64_t D, Gw, depth_stride;
  LL_INLINE int64_t at(int64_t c, int p, int64_t k) const { return ((c * kParts + p) * kCoeffs + k) * depth_stride; }
};

struct Guide {
  float w[4];  // w_r, w_g, w_b, bias
};

// One pixel (the tail of a chunk, or every pixel when D > 16 or the image is float64): r, g, b in/out.
template <typename A>
LL_INLINE void apply_pixel(const A* tab, const RowTable& t, const A* guide, int32_t i0, A wx1, bool gray,
                           A& r, A& g, A& b) {
  if (gray) g = b = r;  // R = G = B
  A gd = ((r * guide[0] + g * guide[1]) + b * guide[2]) + guide[3];
  gd = clamp01(gd);
  const A cz = gd * A(2) - A(1);
  A z = ((cz + A(1)) * static_cast<A>(t.D) - A(1)) / A(2);
  z = std::min(std::max(z, A(0)), static_cast<A>(t.D - 1));
  const int64_t d0 = static_cast<int64_t>(z);
  const A wz1 = z - static_cast<A>(d0);
  A a[kCoeffs];
  for (int64_t k = 0; k < kCoeffs; ++k) {
    const A* p = tab + d0;
    a[k] = (p[t.at(i0, kValue, k)] + wx1 * p[t.at(i0, kNextCell, k)]) +
           wz1 * (p[t.at(i0, kNextDepth, k)] + wx1 * p[t.at(i0, kBoth, k)]);
  }
  A y[3];
  for (int c = 0; c < 3; ++c)
    y[c] = clamp01(((a[4 * c] * r + a[4 * c + 1] * g) + a[4 * c + 2] * b) + a[4 * c + 3]);
  if (gray) {
    r = ((y[0] + y[1]) + y[2]) / A(3);
  } else {
    r = y[0], g = y[1], b = y[2];
  }
}

// Part p of a table vector (its depths in lanes) at each pixel's depth d0: one in-register permute.
LL_INLINE FloatV depth_lookup(const float* at, int p, IntV d0) {
  return __builtin_shuffle(load_v(at + p * kCoeffs * kLanes), d0);
}

// 16 pixels from index j of the chunk (D <= 16: a cell's depths are the lanes of one table vector).
// The x cells of the 16 pixels are i0[j] .. i0[j + 15] (nondecreasing): usually one, two at a cell edge.
LL_INLINE void apply_lanes(const float* tab, const RowTable& t, const Guide& gw, const int32_t* i0,
                           const float* wx1p, bool gray, float* rp, float* gp, float* bp) {
  const FloatV r = load_v(rp), g = gray ? r : load_v(gp), b = gray ? r : load_v(bp);
  const FloatV gd = clamp01v(((r * gw.w[0] + g * gw.w[1]) + b * gw.w[2]) + gw.w[3]);
  const float D = static_cast<float>(t.D);
  const FloatV zero = {}, last = zero + (D - 1.f);
  FloatV z = ((gd * 2.f - 1.f + 1.f) * D - 1.f) / 2.f;
  z = z > last ? last : z;
  z = z < zero ? zero : z;
  const IntV d0 = __builtin_convertvector(z, IntV);
  const FloatV wz1 = z - __builtin_convertvector(d0, FloatV);
  const FloatV wx1 = load_v(wx1p);
  const IntV cells = load_iv(i0);
  FloatV a[kCoeffs];
  for (int32_t c = i0[0]; c <= i0[kLanes - 1]; ++c) {
    const auto here = cells == c;
#pragma GCC unroll 12
    for (int64_t k = 0; k < kCoeffs; ++k) {
      const float* at = tab + t.at(c, kValue, k);  // the parts of (c, k) lie kCoeffs * kLanes apart
      const FloatV v = (depth_lookup(at, kValue, d0) + wx1 * depth_lookup(at, kNextCell, d0)) +
                       wz1 * (depth_lookup(at, kNextDepth, d0) + wx1 * depth_lookup(at, kBoth, d0));
      a[k] = c == i0[0] ? v : (here ? v : a[k]);
    }
  }
  FloatV y[3];
#pragma GCC unroll 3
  for (int c = 0; c < 3; ++c) y[c] = clamp01v(((a[4 * c] * r + a[4 * c + 1] * g) + a[4 * c + 2] * b) + a[4 * c + 3]);
  if (gray) {
    store_v(rp, ((y[0] + y[1]) + y[2]) / 3.f);
  } else {
    store_v(rp, y[0]), store_v(gp, y[1]), store_v(bp, y[2]);
  }
}

struct Shape {
  int64_t B, C, H, W, D, Gh, Gw;
  int color;
};

// What every chunk of a call shares: the row's table, the column taps, the guide and the strides (x: image,
// y: output; pixel ps, channel cs).
template <typename A>
struct ChunkArgs {
  const A* tab;
  RowTable t;
  const AxisTaps<A>* xt;
  A guide[4];
  Guide gw;  // the guide as float (the vector path)
  int color, channels;
  int64_t psx, csx, psy, csy;
};

// The two layouts of real photos get compile-time strides (vectorizable loads and stores); any other view (a
// non-dense one in, its dense result out) runs through its own strides.
enum class Layout { kPlanar, kInterleaved2, kInterleaved3, kInterleaved4, kStrided };

// The n pixels from column X0 (x, y: the chunk's first pixel): loaded, sliced and applied in v, stored.
template <typename T, typename A, int PS, int CS>
LL_INLINE void chunk_impl(const T* x, T* y, int64_t X0, int64_t n, const ChunkArgs<A>& a, A* const* v) {
  const Strides<PS, CS> xst{a.psx, a.csx}, yst{a.psy, a.csy};
  load_chunk<T, A>(x, xst, a.color, n, v);
  const bool gray = a.color == 1;
  const AxisTaps<A>& xt = *a.xt;
  int64_t j = 0;
  if constexpr (std::is_same_v<A, float>) {
    if (a.t.depth_stride == kLanes)
      for (; j + kLanes <= n; j += kLanes)
        apply_lanes(a.tab, a.t, a.gw, xt.i0.data() + X0 + j, xt.w1.data() + X0 + j, gray, v[0] + j, v[1] + j,
                    v[2] + j);
  }
  for (; j < n; ++j)
    apply_pixel<A>(a.tab, a.t, a.guide, xt.i0[X0 + j], xt.w1[X0 + j], gray, v[0][j], v[1][j], v[2][j]);
  store_chunk<T, A>(x, xst, y, yst, a.color, a.channels, n, v);
}

template <typename T, typename A>
LL_INLINE void chunk_of_layout(Layout l, const T* x, T* y, int64_t X0, int64_t n, const ChunkArgs<A>& a,
                               A* const* v) {
  switch (l) {
    case Layout::kPlanar: return chunk_impl<T, A, 1, 0>(x, y, X0, n, a, v);
    case Layout::kInterleaved2: return chunk_impl<T, A, 2, 1>(x, y, X0, n, a, v);
    case Layout::kInterleaved3: return chunk_impl<T, A, 3, 1>(x, y, X0, n, a, v);
    case Layout::kInterleaved4: return chunk_impl<T, A, 4, 1>(x, y, X0, n, a, v);
    case Layout::kStrided: return chunk_impl<T, A, 0, 0>(x, y, X0, n, a, v);
  }
}

// One chunk per dtype computed in float: AVX-512 / AVX2 clones under the portable baseline build, picked at load
// time (the vector path's depth lookup is an AVX-512 permute; the other clones emulate it).
#define LL_DEFINE_CHUNK(T)                                                                                     \
  LOWLIGHT_CLONES void bilateral_chunk(Layout l, const T* x, T* y, int64_t X0, int64_t n,                    \
                                       const ChunkArgs<float>& a, float* const* v) {                          \
    chunk_of_layout<T, float>(l, x, y, X0, n, a, v);                                                           \
  }
LL_DEFINE_CHUNK(uint8_t)
LL_DEFINE_CHUNK(uint16_t)
LL_DEFINE_CHUNK(c10::Half)
LL_DEFINE_CHUNK(c10::BFloat16)
LL_DEFINE_CHUNK(float)

// float64 images: computed in double, one pixel at a time (the reference's precision, not the fast path).
void bilateral_chunk(Layout l, const double* x, double* y, int64_t X0, int64_t n, const ChunkArgs<double>& a,
                     double* const* v) {
  chunk_of_layout<double, double>(l, x, y, X0, n, a, v);
}

// The table (see RowTable) of grid row gy of image b; lanes past D stay 0.
template <typename A>
void fill_grid_row_table(const float* grid, const Shape& s, const RowTable& t, int64_t b, int64_t gy, A* tab) {
  for (int64_t k = 0; k < kCoeffs; ++k) {
    for (int64_t d = 0; d < s.D; ++d) {
      const float* row = grid + (((b * kCoeffs + k) * s.D + d) * s.Gh + gy) * s.Gw;
      for (int64_t c = 0; c < s.Gw; ++c) tab[t.at(c, kValue, k) + d] = static_cast<A>(row[c]);
    }
    for (int64_t c = 0; c < s.Gw; ++c) {
      const A* value = tab + t.at(c, kValue, k);
      const A* next = tab + t.at(std::min(c + 1, s.Gw - 1), kValue, k);
      A* dx = tab + t.at(c, kNextCell, k);
      for (int64_t d = 0; d < s.D; ++d) dx[d] = next[d] - value[d];
    }
    for (int64_t c = 0; c < s.Gw; ++c) {
      for (int from : {kValue, kNextCell}) {
        const A* v = tab + t.at(c, from, k);
        A* dz = tab + t.at(c, from == kValue ? kNextDepth : kBoth, k);
        for (int64_t d = 0; d < s.D; ++d) dz[d] = d + 1 < s.D ? v[d + 1] - v[d] : A(0);
      }
    }
  }
}

// One image row's table: the tables of its two grid rows lerped (every part is linear in the grid).
#define LL_DEFINE_LERP_TABLES(A)                                                                            \
  LOWLIGHT_CLONES void lerp_tables(const A* lo, A w0, const A* hi, A w1, A* tab, int64_t n) {              \
    for (int64_t i = 0; i < n; ++i) tab[i] = w0 * lo[i] + w1 * hi[i];                                       \
  }
LL_DEFINE_LERP_TABLES(float)
LL_DEFINE_LERP_TABLES(double)

template <typename T, typename A>
void bilateral_forward(const Shape& s, const at::Tensor& image, at::Tensor& out, const float* grid,
                       const float* guide) {
  const T* x = image.const_data_ptr<T>();
  T* y = out.mutable_data_ptr<T>();
  const int64_t xb = image.stride(0), xh = image.stride(2), yb = out.stride(0), yh = out.stride(2);
  const AxisTaps<A> yt(s.H, s.Gh), xt(s.W, s.Gw);
  const bool vector = std::is_same_v<A, float> && s.D <= kLanes;
  ChunkArgs<A> args{nullptr, RowTable{s.D, s.Gw, vector ? kLanes : s.D}, &xt,
                    {guide[0], guide[1], guide[2], guide[3]}, Guide{{guide[0], guide[1], guide[2], guide[3]}},
                    s.color, static_cast<int>(s.C), image.stride(3), image.stride(1), out.stride(3), out.stride(1)};
  Layout layout = Layout::kStrided;
  if (args.psx == 1 && args.psy == 1) {
    layout = Layout::kPlanar;
  } else if (args.csx == 1 && args.csy == 1 && args.psx == s.C && args.psy == s.C && s.C >= 2) {
    layout = s.C == 2 ? Layout::kInterleaved2 : s.C == 3 ? Layout::kInterleaved3 : Layout::kInterleaved4;
  }
  const int64_t table = s.Gw * kParts * kCoeffs * args.t.depth_stride;
  std::vector<A> grid_rows(s.B * s.Gh * table, A(0));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t gy = 0; gy < s.Gh; ++gy)
      fill_grid_row_table<A>(grid, s, args.t, b, gy, grid_rows.data() + (b * s.Gh + gy) * table);
  const int64_t grain = std::max<int64_t>(1, kRowGrainValues / (s.W * s.C));
  at::parallel_for(0, s.B * s.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<A> tab(table);
    std::vector<A> stage(3 * kChunk);
    A* v[3] = {stage.data(), stage.data() + kChunk, stage.data() + 2 * kChunk};
    ChunkArgs<A> a = args;
    a.tab = tab.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.H, Y = row % s.H;
      const A* lo = grid_rows.data() + (b * s.Gh + yt.i0[Y]) * table;
      const A* hi = grid_rows.data() + (b * s.Gh + std::min<int64_t>(yt.i0[Y] + 1, s.Gh - 1)) * table;
      lerp_tables(lo, yt.w0[Y], hi, yt.w1[Y], tab.data(), table);
      const T* xr = x + b * xb + Y * xh;
      T* yr = y + b * yb + Y * yh;
      for (int64_t X0 = 0; X0 < s.W; X0 += kChunk)
        bilateral_chunk(layout, xr + X0 * a.psx, yr + X0 * a.psy, X0, std::min(kChunk, s.W - X0), a, v);
    }
  });
}

at::Tensor bilateral_apply_cpu(const at::Tensor& image, const at::Tensor& grid_in, const at::Tensor& guide_in) {
  lowlight::check_bilateral_inputs(image, grid_in, guide_in);
  at::Tensor out = at::empty_like(image);  // the fake kernel's rule: same dtype and memory layout
  if (out.numel() == 0) return out;
  lowlight::advise_huge_pages(out);
  const at::Tensor grid = grid_in.contiguous();
  const at::Tensor guide = guide_in.contiguous();
  const Shape s{image.size(0), image.size(1), image.size(2), image.size(3), grid.size(2), grid.size(3), grid.size(4),
                image.size(1) <= 2 ? 1 : 3};
  const float* g = grid.const_data_ptr<float>();
  const float* w = guide.const_data_ptr<float>();
  switch (image.scalar_type()) {
    case at::kByte: bilateral_forward<uint8_t, float>(s, image, out, g, w); break;
    case at::kUInt16: bilateral_forward<uint16_t, float>(s, image, out, g, w); break;
    case at::kHalf: bilateral_forward<c10::Half, float>(s, image, out, g, w); break;
    case at::kBFloat16: bilateral_forward<c10::BFloat16, float>(s, image, out, g, w); break;
    case at::kFloat: bilateral_forward<float, float>(s, image, out, g, w); break;
    default: bilateral_forward<double, double>(s, image, out, g, w);  // float64 stays float64, as the reference
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) { m.impl("bilateral_apply", &bilateral_apply_cpu); }
