// CPU kernels of lowlight::le_curve and lowlight::le_curve_backward (float, double).
//
// y = LE^n(x), LE(x) = x + a * x * (1 - x), step i uses alpha map min(i, k-1). A low-resolution alpha is
// resized bilinearly (align_corners=False, with F.interpolate's index/weight arithmetic) row by row inside
// the kernel: each low-res row is expanded horizontally once into a W-long buffer (a gather, the costly
// part), and every output row it touches is a contiguous vertical lerp of two expanded rows. Nothing of
// alpha's size at full resolution is ever allocated. The backward recomputes the iterates per pixel and,
// for a low-res alpha, applies the adjoint of the same two steps (vertical sums per row group, then one
// horizontal contraction per group) without atomics or races.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "bilinear_taps.h"  // LinearTaps

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../limits.h"
#include "simd.h"  // LOWLIGHT_CLONES, LOWLIGHT_X86 (streaming stores)

namespace {

using lowlight::kMaxIterations;
constexpr int64_t kRowGrainPixels = 32768;  // work per parallel chunk: amortizes the thread hand-off
constexpr int64_t kStreamBytes = int64_t(32) << 20;  // outputs above this bypass the caches

// The row kernels keep each pixel's value in a register through all the steps (one read of x and alpha,
// one write of y), working on kUnroll 64-byte GCC vectors at a time (16 floats / 8 doubles each): the
// independent chains hide the latency of the dependent multiply-adds of a pixel's steps. The clones
// (LOWLIGHT_CLONES) give AVX-512 / AVX2+FMA code under the portable baseline build, picked at load time.
// Vector-typed values only pass between always_inline helpers, never across a real call: no ABI concern.
#pragma GCC diagnostic ignored "-Wpsabi"

constexpr int kUnroll = 4;

template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VectorOf<double> {
  typedef double type __attribute__((vector_size(64)));
};

// V is either the vector type (the body of a row) or the scalar T (its tail): the same code serves both.
template <typename V, typename T>
LL_INLINE V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
LL_INLINE void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// A store that bypasses the caches (no read-for-ownership of the destination lines), for outputs far
// larger than the caches that nothing reads soon. p must be 16-byte aligned; SSE stores are in the
// baseline ISA, and write-combining merges them into full lines.
template <typename V, typename T>
LL_INLINE void stream_store(T* p, const V& v) {
#ifdef LOWLIGHT_X86
  if constexpr (sizeof(V) % 16 == 0) {
    for (size_t offset = 0; offset < sizeof(V); offset += 16) {
      __m128 part;
      std::memcpy(&part, reinterpret_cast<const char*>(&v) + offset, 16);
      _mm_stream_ps(reinterpret_cast<float*>(reinterpret_cast<char*>(p) + offset), part);
    }
    return;
  }
#endif
  store(p, v);
}

// Makes this thread's streaming stores visible before the parallel region ends.
inline void stream_fence() {
#ifdef LOWLIGHT_X86
  _mm_sfence();
#endif
}

// Where the alpha of one output row comes from, per used map m: the map's row itself (full resolution),
// or the vertical lerp w0 * lo[m] + w1 * hi[m] of two horizontally expanded low-res rows (resized).
template <typename T>
struct AlphaRows {
  const T* const* lo;
  const T* const* hi;
  T w0, w1;
};

template <typename V, bool kResized, typename T>
LL_INLINE V alpha_lanes(const AlphaRows<T>& a, int m, int64_t j) {
  if constexpr (kResized)  // same operation order as ATen's bilinear kernel
    return a.w0 * load<V>(a.lo[m] + j) + a.w1 * load<V>(a.hi[m] + j);
  else
    return load<V>(a.lo[m] + j);
}

// Where d(loss)/d(alpha) of one output row goes, per used map m: stored into the map's row (full
// resolution), or the adjoint of the vertical lerp, lo[m] += w0 * d and hi[m] += w1 * d (resized).
template <typename T>
struct AlphaGradRows {
  T* const* lo;
  T* const* hi;
  T w0, w1;
  bool stream;  // full resolution: write with streaming stores (the rows are 16-byte aligned)
};

template <typename V, bool kResized, typename T>
LL_INLINE void put_alpha_grad(const AlphaGradRows<T>& g, int m, int64_t j, const V& d) {
  if constexpr (kResized) {
    store(g.lo[m] + j, load<V>(g.lo[m] + j) + g.w0 * d);
    store(g.hi[m] + j, load<V>(g.hi[m] + j) + g.w1 * d);
  } else if (g.stream) {
    stream_store(g.lo[m] + j, d);
  } else {
    store(g.lo[m] + j, d);
  }
}

// Step i uses map min(i, maps - 1) where maps = min(k, n): maps 0..maps-2 one step each, the last map
// the remaining n - maps + 1 steps.
LL_INLINE int steps_of_map(int m, int maps, int n) { return m + 1 == maps ? n - m : 1; }

// x + a x (1 - x) associated as the reference computes it, (a x)(1 - x) + x: rounding stays close to the
// reference over many steps, and a x and 1 - x run in parallel (a short dependency chain per step).
template <typename V>
LL_INLINE V curve_step(const V& x, const V& a) {
  return x + (a * x) * (1 - x);
}

// U groups of V lanes starting at pixel j: y = LE^n(x).
template <int U, typename V, bool kResized, typename T>
LL_INLINE void curve_lanes(const T* x, T* y, const AlphaRows<T>& a, int maps, int n, int64_t j) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  V v[U];
  for (int u = 0; u < U; ++u) v[u] = load<V>(x + j + u * kLanes);
  for (int m = 0; m < maps; ++m) {
    V am[U];
    for (int u = 0; u < U; ++u) am[u] = alpha_lanes<V, kResized>(a, m, j + u * kLanes);
    for (int s = steps_of_map(m, maps, n); s > 0; --s)
      for (int u = 0; u < U; ++u) v[u] = curve_step(v[u], am[u]);
  }
  for (int u = 0; u < U; ++u) store(y + j + u * kLanes, v[u]);
}

// Recomputes the iterates x_0..x_{n-1} (n <= 64, in a local array), then runs the chain backward through
// x_{i+1} = x_i + a x_i (1 - x_i): d(alpha_i) = g x_i (1 - x_i), g <- g (1 + a - 2 a x_i). The steps that
// share the last map are summed in registers before they are written.
template <int U, typename V, bool kResized, typename T>
LL_INLINE void curve_backward_lanes(const T* grad_y, const T* x, const AlphaRows<T>& a, T* grad_x,
                                    const AlphaGradRows<T>& grad_alpha, int maps, int n, int64_t j) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  V alpha[kMaxIterations][U], one_plus_alpha[kMaxIterations][U], minus_two_alpha[kMaxIterations][U];
  for (int m = 0; m < maps; ++m) {
    for (int u = 0; u < U; ++u) {
      alpha[m][u] = alpha_lanes<V, kResized>(a, m, j + u * kLanes);
      one_plus_alpha[m][u] = T(1) + alpha[m][u];
      minus_two_alpha[m][u] = T(-2) * alpha[m][u];
    }
  }
  V iterate[kMaxIterations][U], v[U];
  for (int u = 0; u < U; ++u) v[u] = load<V>(x + j + u * kLanes);
  for (int i = 0; i < n; ++i) {
    const int m = std::min(i, maps - 1);
    for (int u = 0; u < U; ++u) {
      iterate[i][u] = v[u];
      v[u] = curve_step(v[u], alpha[m][u]);
    }
  }
  V g[U], dalpha[U];
  for (int u = 0; u < U; ++u) {
    g[u] = load<V>(grad_y + j + u * kLanes);
    dalpha[u] = g[u] * T(0);
  }
  for (int i = n - 1; i >= 0; --i) {
    const int m = std::min(i, maps - 1);
    for (int u = 0; u < U; ++u) {
      const V xi = iterate[i][u];
      dalpha[u] = dalpha[u] + g[u] * (xi * (T(1) - xi));
      g[u] = g[u] * (one_plus_alpha[m][u] + minus_two_alpha[m][u] * xi);
    }
    if (i == 0 || std::min(i - 1, maps - 1) != m) {  // the lowest step of map m: its gradient is complete
      for (int u = 0; u < U; ++u) {
        put_alpha_grad<V, kResized>(grad_alpha, m, j + u * kLanes, dalpha[u]);
        dalpha[u] = g[u] * T(0);
      }
    }
  }
  for (int u = 0; u < U; ++u) store(grad_x + j + u * kLanes, g[u]);
}

// Calls lanes<U, V>(j) over [0, len): kUnroll vectors at a time, then single vectors, then scalars.
template <typename T, typename Lanes>
LL_INLINE void for_each_lane_group(int64_t len, Lanes&& lanes) {
  using V = typename VectorOf<T>::type;
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  int64_t j = 0;
  for (; j + kUnroll * kLanes <= len; j += kUnroll * kLanes) lanes.template operator()<kUnroll, V>(j);
  for (; j + kLanes <= len; j += kLanes) lanes.template operator()<1, V>(j);
  for (; j < len; ++j) lanes.template operator()<1, T>(j);
}

template <bool kResized, typename T>
LL_INLINE void curve_row_impl(const T* x, T* y, const AlphaRows<T>& a, int maps, int n, int64_t len) {
  for_each_lane_group<T>(len, [&]<int U, typename V>(int64_t j) LL_INLINE_LAMBDA {
    curve_lanes<U, V, kResized>(x, y, a, maps, n, j);
  });
}

template <bool kResized, typename T>
LL_INLINE void curve_backward_row_impl(const T* grad_y, const T* x, const AlphaRows<T>& a, T* grad_x,
                                       const AlphaGradRows<T>& grad_alpha, int maps, int n, int64_t len) {
  for_each_lane_group<T>(len, [&]<int U, typename V>(int64_t j) LL_INLINE_LAMBDA {
    curve_backward_lanes<U, V, kResized>(grad_y, x, a, grad_x, grad_alpha, maps, n, j);
  });
}

// One output row. kResized: alpha is lerped from two expanded low-res rows and its gradient is summed
// into two W-long accumulator rows; otherwise alpha and its gradient are the maps' own rows.
#define LL_DEFINE_ROW_KERNELS(T, kResized, suffix)                                                         \
  LOWLIGHT_CLONES void curve_row##suffix(const T* x, T* y, const AlphaRows<T>& a, int maps, int n,       \
                                          int64_t len) {                                                  \
    curve_row_impl<kResized>(x, y, a, maps, n, len);                                                      \
  }                                                                                                       \
  LOWLIGHT_CLONES void curve_backward_row##suffix(const T* grad_y, const T* x, const AlphaRows<T>& a,    \
                                                   T* grad_x, const AlphaGradRows<T>& grad_alpha,         \
                                                   int maps, int n, int64_t len) {                        \
    curve_backward_row_impl<kResized>(grad_y, x, a, grad_x, grad_alpha, maps, n, len);                    \
  }

LL_DEFINE_ROW_KERNELS(float, false, _full_res)
LL_DEFINE_ROW_KERNELS(double, false, _full_res)
LL_DEFINE_ROW_KERNELS(float, true, _resized)
LL_DEFINE_ROW_KERNELS(double, true, _resized)

// ---------------------------------------------------------------- bilinear taps (align_corners=False)

using lowlight::LinearTaps;

// out[X] = w0[X] * src[i0[X]] + w1[X] * src[i1[X]]: one low-res row expanded to full width.
template <typename T>
void expand_row(const LinearTaps<T>& t, const T* src, T* out) {
  const int64_t n = static_cast<int64_t>(t.i0.size());
  for (int64_t o = 0; o < n; ++o) out[o] = t.w0[o] * src[t.i0[o]] + t.w1[o] * src[t.i1[o]];
}

// The adjoint of expand_row, stored by source index (all (X, weight) pairs that read source c, in X order)
// so that contracting sums each output in a register instead of a chain of read-modify-writes.
template <typename T>
struct AdjointTaps {
  std::vector<int64_t> begin;  // pairs of source c: [begin[c], begin[c + 1])
  std::vector<int64_t> index;
  std::vector<T> weight;

  AdjointTaps(const LinearTaps<T>& t, int64_t in) : begin(in + 1, 0) {
    const int64_t out = static_cast<int64_t>(t.i0.size());
    for (int64_t o = 0; o < out; ++o) {
      ++begin[t.i0[o] + 1];
      ++begin[t.i1[o] + 1];
    }
    for (int64_t c = 0; c < in; ++c) begin[c + 1] += begin[c];
    index.resize(begin[in]);
    weight.resize(begin[in]);
    std::vector<int64_t> next(begin.begin(), begin.end() - 1);
    for (int64_t o = 0; o < out; ++o) {
      index[next[t.i0[o]]] = o;
      weight[next[t.i0[o]]++] = t.w0[o];
      index[next[t.i1[o]]] = o;
      weight[next[t.i1[o]]++] = t.w1[o];
    }
  }
};

// dst_a[c] = sum of weight * d_a[X] over the pairs of source c, and the same for b (two independent sums
// per iteration: their latency overlaps).
template <typename T>
void contract_rows(const AdjointTaps<T>& t, const T* d_a, const T* d_b, T* dst_a, T* dst_b) {
  const int64_t in = static_cast<int64_t>(t.begin.size()) - 1;
  for (int64_t c = 0; c < in; ++c) {
    T sum_a = T(0), sum_b = T(0);
    for (int64_t e = t.begin[c]; e < t.begin[c + 1]; ++e) {
      sum_a += t.weight[e] * d_a[t.index[e]];
      sum_b += t.weight[e] * d_b[t.index[e]];
    }
    dst_a[c] = sum_a;
    dst_b[c] = sum_b;
  }
}

// ---------------------------------------------------------------- shapes and checks

struct Shape {
  int64_t B, C, H, W, k, h, w;
  int n;
  int64_t used_maps() const { return std::min<int64_t>(k, n); }  // maps n..k-1 are never used
  bool full_res() const { return h == H && w == W; }
  // offset of alpha map m of channel c of image b (a (B, C*k, h, w) plane index)
  int64_t alpha_plane(int64_t b, int64_t c, int64_t m) const { return (b * k + m) * C + c; }
};

Shape check_inputs(const char* op, const at::Tensor& x, const at::Tensor& alpha, int64_t iterations) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(alpha.dim() == 4, op, ": alpha must be 4-D (B, C*k, h, w), got ", alpha.dim(), "-D");
  TORCH_CHECK(x.is_floating_point(), op, ": x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": the CPU kernel supports float32 and float64 x, got ", x.scalar_type());
  TORCH_CHECK(alpha.scalar_type() == x.scalar_type(), op, ": alpha is ", alpha.scalar_type(), " but x is ",
              x.scalar_type());
  TORCH_CHECK(alpha.device() == x.device(), op, ": alpha is on ", alpha.device(), " but x is on ", x.device());
  TORCH_CHECK(iterations >= 1 && iterations <= kMaxIterations, op, ": iterations must be in [1, ",
              kMaxIterations, "], got ", iterations);
  Shape s{x.size(0), x.size(1), x.size(2), x.size(3), 0, alpha.size(2), alpha.size(3), int(iterations)};
  TORCH_CHECK(s.C >= 1 && s.H >= 1 && s.W >= 1, op, ": x has an empty dimension: ", x.sizes());
  TORCH_CHECK(s.h >= 1 && s.w >= 1, op, ": alpha has an empty dimension: ", alpha.sizes());
  TORCH_CHECK(alpha.size(0) == s.B, op, ": alpha batch ", alpha.size(0), " != x batch ", s.B);
  TORCH_CHECK(alpha.size(1) >= s.C && alpha.size(1) % s.C == 0, op, ": alpha must have C*k channels (C=", s.C,
              ", k>=1), got ", alpha.size(1));
  s.k = alpha.size(1) / s.C;
  return s;
}

// Per-thread cache of expanded (full-width) low-res alpha rows, two slots (the rows an output row
// lerps between). Output rows are visited in order, so each low-res row is expanded about once per chunk.
template <typename T>
struct ExpandedRows {
  const Shape& s;
  const T* alpha;
  const LinearTaps<T>& htaps;
  std::vector<T> buf;  // [slot][map][W]
  int64_t key[2] = {-1, -1};  // (plane * h + low-res row) held by each slot

  ExpandedRows(const Shape& s_, const T* alpha_, const LinearTaps<T>& htaps_)
      : s(s_), alpha(alpha_), htaps(htaps_), buf(2 * s_.used_maps() * s_.W) {}

  // The expanded rows (map-major, W each) of low-res row r of plane p = b * C + c; never evicts `keep`.
  const T* get(int64_t p, int64_t r, const T* keep) {
    const int64_t want = p * s.h + r;
    for (int slot = 0; slot < 2; ++slot)
      if (key[slot] == want) return slot_ptr(slot);
    const int slot = slot_ptr(0) == keep ? 1 : 0;
    const int64_t b = p / s.C, c = p % s.C;
    for (int64_t m = 0; m < s.used_maps(); ++m)
      expand_row(htaps, alpha + (s.alpha_plane(b, c, m) * s.h + r) * s.w, slot_ptr(slot) + m * s.W);
    key[slot] = want;
    return slot_ptr(slot);
  }
  T* slot_ptr(int slot) { return buf.data() + slot * s.used_maps() * s.W; }
};

// ---------------------------------------------------------------- forward

template <typename T>
void le_curve_forward(const Shape& s, const T* x, const T* alpha, T* y) {
  const int64_t rows = s.B * s.C * s.H;
  const int64_t grain = std::max<int64_t>(1, kRowGrainPixels / s.W);
  const int maps = int(s.used_maps());
  if (s.full_res()) {
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      const T* map_rows[kMaxIterations];
      for (int64_t row = begin; row < end; ++row) {
        const int64_t p = row / s.H, Y = row % s.H, b = p / s.C, c = p % s.C;
        for (int m = 0; m < maps; ++m) map_rows[m] = alpha + (s.alpha_plane(b, c, m) * s.H + Y) * s.W;
        curve_row_full_res(x + row * s.W, y + row * s.W, AlphaRows<T>{map_rows, nullptr, T(1), T(0)}, maps,
                           s.n, s.W);
      }
    });
    return;
  }
  const LinearTaps<T> vtaps(s.h, s.H), htaps(s.w, s.W);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    ExpandedRows<T> cache(s, alpha, htaps);
    const T* lo[kMaxIterations];
    const T* hi[kMaxIterations];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t p = row / s.H, Y = row % s.H;
      const T* e0 = cache.get(p, vtaps.i0[Y], nullptr);
      const T* e1 = cache.get(p, vtaps.i1[Y], e0);
      for (int m = 0; m < maps; ++m) {
        lo[m] = e0 + m * s.W;
        hi[m] = e1 + m * s.W;
      }
      curve_row_resized(x + row * s.W, y + row * s.W, AlphaRows<T>{lo, hi, vtaps.w0[Y], vtaps.w1[Y]}, maps, s.n,
                        s.W);
    }
  });
}

// ---------------------------------------------------------------- backward

template <typename T>
void le_curve_backward_full_res(const Shape& s, const T* grad_y, const T* x, const T* alpha, T* grad_x,
                                T* grad_alpha) {
  const int64_t rows = s.B * s.C * s.H;
  const int64_t grain = std::max<int64_t>(1, kRowGrainPixels / s.W);
  const int maps = int(s.used_maps());
  // A gradient far larger than the caches (Zero-DCE's 8 maps) is streamed out: saves reading it in first.
  const bool stream = reinterpret_cast<uintptr_t>(grad_alpha) % 16 == 0 && s.W * sizeof(T) % 16 == 0 &&
                      s.B * s.C * s.k * s.H * s.W * int64_t(sizeof(T)) >= kStreamBytes;
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    const T* map_rows[kMaxIterations];
    T* grad_rows[kMaxIterations];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t p = row / s.H, Y = row % s.H, b = p / s.C, c = p % s.C;
      auto row_of = [&](int64_t m) { return (s.alpha_plane(b, c, m) * s.H + Y) * s.W; };
      for (int m = 0; m < maps; ++m) {
        map_rows[m] = alpha + row_of(m);
        grad_rows[m] = grad_alpha + row_of(m);
      }
      for (int64_t m = maps; m < s.k; ++m) std::fill_n(grad_alpha + row_of(m), s.W, T(0));  // unused maps
      curve_backward_row_full_res(grad_y + row * s.W, x + row * s.W, AlphaRows<T>{map_rows, nullptr, T(1), T(0)},
                                  grad_x + row * s.W, AlphaGradRows<T>{grad_rows, nullptr, T(1), T(0), stream}, maps,
                                  s.n, s.W);
    }
    if (stream) stream_fence();
  });
}

// A run of consecutive output rows of one plane that all lerp between the same two low-res rows.
struct RowGroup {
  int64_t lo, hi;  // low-res rows (weights w0 and w1)
  int64_t begin, end;  // output rows
};

// Output rows grouped by their low-res rows, long groups split so that every plane still has parallel work.
template <typename T>
std::vector<RowGroup> row_groups(const LinearTaps<T>& vtaps, int64_t W) {
  const int64_t max_rows = std::max<int64_t>(1, kRowGrainPixels / W);
  std::vector<RowGroup> groups;
  const int64_t H = static_cast<int64_t>(vtaps.i0.size());
  for (int64_t Y = 0; Y < H; ++Y) {
    const bool same = !groups.empty() && groups.back().lo == vtaps.i0[Y] && groups.back().hi == vtaps.i1[Y] &&
                      groups.back().end - groups.back().begin < max_rows;
    if (same)
      groups.back().end = Y + 1;
    else
      groups.push_back({vtaps.i0[Y], vtaps.i1[Y], Y, Y + 1});
  }
  return groups;
}

// Low-res alpha: the resize adjoint without races or full-size temporaries. Pass 1 (parallel over row
// groups) sums each group's per-pixel d(alpha) vertically into two W-long rows per map (for its two
// low-res rows), then contracts them horizontally into w-long partials of the group. Pass 2 (parallel
// over alpha planes) adds the groups' partials into grad_alpha in a fixed order: deterministic.
template <typename T>
void le_curve_backward_resized(const Shape& s, const T* grad_y, const T* x, const T* alpha, T* grad_x,
                               T* grad_alpha) {
  const LinearTaps<T> vtaps(s.h, s.H), htaps(s.w, s.W);
  const AdjointTaps<T> hadjoint(htaps, s.w);
  const std::vector<RowGroup> groups = row_groups(vtaps, s.W);
  const int64_t G = static_cast<int64_t>(groups.size());
  const int maps = int(s.used_maps());
  const int64_t planes = s.B * s.C;
  std::vector<T> partial(planes * G * 2 * maps * s.w);  // [plane][group][lo/hi][map][w]
  auto partial_of = [&](int64_t p, int64_t g, int64_t side, int64_t m) {
    return partial.data() + (((p * G + g) * 2 + side) * maps + m) * s.w;
  };

  at::parallel_for(0, planes * G, 1, [&](int64_t begin, int64_t end) {
    ExpandedRows<T> cache(s, alpha, htaps);
    std::vector<T> acc(2 * maps * s.W);  // [lo/hi][map][W]: the group's d(alpha), summed vertically
    const T* lo[kMaxIterations];
    const T* hi[kMaxIterations];
    T* acc_lo[kMaxIterations];
    T* acc_hi[kMaxIterations];
    for (int m = 0; m < maps; ++m) {
      acc_lo[m] = acc.data() + m * s.W;
      acc_hi[m] = acc.data() + (maps + m) * s.W;
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task / G, g = task % G;
      const RowGroup& grp = groups[g];
      const T* e0 = cache.get(p, grp.lo, nullptr);
      const T* e1 = cache.get(p, grp.hi, e0);
      for (int m = 0; m < maps; ++m) {
        lo[m] = e0 + m * s.W;
        hi[m] = e1 + m * s.W;
      }
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t Y = grp.begin; Y < grp.end; ++Y) {
        const T w0 = vtaps.w0[Y], w1 = vtaps.w1[Y];
        const int64_t row = p * s.H + Y;
        curve_backward_row_resized(grad_y + row * s.W, x + row * s.W, AlphaRows<T>{lo, hi, w0, w1},
                                   grad_x + row * s.W, AlphaGradRows<T>{acc_lo, acc_hi, w0, w1, false}, maps, s.n, s.W);
      }
      for (int m = 0; m < maps; ++m)
        contract_rows(hadjoint, acc_lo[m], acc_hi[m], partial_of(p, g, 0, m), partial_of(p, g, 1, m));
    }
  });

  at::parallel_for(0, planes * s.k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task / s.k, m = task % s.k, b = p / s.C, c = p % s.C;
      T* out = grad_alpha + s.alpha_plane(b, c, m) * s.h * s.w;
      std::fill_n(out, s.h * s.w, T(0));
      if (m >= maps) continue;  // a map no step uses
      for (int64_t g = 0; g < G; ++g) {
        const T* lo = partial_of(p, g, 0, m);
        const T* hi = partial_of(p, g, 1, m);
        T* out_lo = out + groups[g].lo * s.w;
        T* out_hi = out + groups[g].hi * s.w;
        for (int64_t j = 0; j < s.w; ++j) out_lo[j] += lo[j];
        for (int64_t j = 0; j < s.w; ++j) out_hi[j] += hi[j];
      }
    }
  });
}

// ---------------------------------------------------------------- ops

at::Tensor le_curve_cpu(const at::Tensor& x_in, const at::Tensor& alpha_in, int64_t iterations) {
  const Shape s = check_inputs("le_curve", x_in, alpha_in, iterations);
  const at::Tensor x = x_in.contiguous(), alpha = alpha_in.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "le_curve_cpu", [&] {
    le_curve_forward<scalar_t>(s, x.const_data_ptr<scalar_t>(), alpha.const_data_ptr<scalar_t>(),
                               y.mutable_data_ptr<scalar_t>());
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> le_curve_backward_cpu(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                         const at::Tensor& alpha_in, int64_t iterations) {
  const Shape s = check_inputs("le_curve_backward", x_in, alpha_in, iterations);
  TORCH_CHECK(grad_y_in.sizes() == x_in.sizes(), "le_curve_backward: grad_y shape ", grad_y_in.sizes(),
              " != x shape ", x_in.sizes());
  TORCH_CHECK(grad_y_in.scalar_type() == x_in.scalar_type(), "le_curve_backward: grad_y is ",
              grad_y_in.scalar_type(), " but x is ", x_in.scalar_type());
  TORCH_CHECK(grad_y_in.device() == x_in.device(), "le_curve_backward: grad_y is on ", grad_y_in.device(),
              " but x is on ", x_in.device());
  const at::Tensor grad_y = grad_y_in.contiguous(), x = x_in.contiguous(), alpha = alpha_in.contiguous();
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_alpha = at::empty(alpha.sizes(), alpha.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "le_curve_backward_cpu", [&] {
    auto run = s.full_res() ? le_curve_backward_full_res<scalar_t> : le_curve_backward_resized<scalar_t>;
    run(s, grad_y.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), alpha.const_data_ptr<scalar_t>(),
        grad_x.mutable_data_ptr<scalar_t>(), grad_alpha.mutable_data_ptr<scalar_t>());
  });
  return {grad_x, grad_alpha};
}

}  // namespace

TORCH_LIBRARY_IMPL(lowlight, CPU, m) {
  m.impl("le_curve", &le_curve_cpu);
  m.impl("le_curve_backward", &le_curve_backward_cpu);
}
