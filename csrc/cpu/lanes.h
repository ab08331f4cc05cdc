// 16-lane float vectors (one AVX-512 register) shared by the photo kernels: widening loads of an image's values
// and the shuffles between an interleaved H x W x C row (C vectors per 16 pixels) and one vector per channel.
// GCC vector extensions: every target compiles them (AVX2 and the baseline split or scalarize the 16-lane
// shuffles, correct but slower).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "simd.h"  // LL_INLINE

namespace lowlight {

constexpr int kLanes = 16;

template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};
using FloatV = Lanes<float>::type;
using IntV = Lanes<int32_t>::type;

// 16 values of an integer or float32 image from p, as floats.
template <typename T>
LL_INLINE FloatV load_lanes(const T* p) {
  typename Lanes<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  // widened one step at a time: GCC then uses vector widening (u8 straight to int32 goes lane by lane)
  if constexpr (std::is_same_v<T, uint8_t>)
    return __builtin_convertvector(__builtin_convertvector(__builtin_convertvector(v, Lanes<uint16_t>::type), IntV),
                                   FloatV);
  else if constexpr (std::is_integral_v<T>)
    return __builtin_convertvector(__builtin_convertvector(v, IntV), FloatV);
  else
    return __builtin_convertvector(v, FloatV);
}

template <typename F, int... P>
constexpr IntV mask_of(F f, std::integer_sequence<int, P...>) {
  return IntV{f(P)...};
}
template <typename F>
constexpr IntV mask_of(F f) {
  return mask_of(f, std::make_integer_sequence<int, kLanes>{});
}

// Channel c of the 16 pixels held interleaved in x[0..C-1] (value q = C p + c: vector q / 16, lane q % 16).
template <int C, int c>
LL_INLINE FloatV channel_of(const FloatV* x) {
  constexpr int kTwo = 2 * kLanes;  // values reachable by one two-source shuffle
  constexpr IntV lo = mask_of([](int p) { return C * p + c < kTwo ? C * p + c : 0; });
  if constexpr (C == 2) {
    return __builtin_shuffle(x[0], x[1], lo);
  } else if constexpr (C == 3) {
    constexpr IntV merge = mask_of([](int p) { return C * p + c < kTwo ? p : C * p + c - kLanes; });
    return __builtin_shuffle(__builtin_shuffle(x[0], x[1], lo), x[2], merge);
  } else {
    static_assert(C == 4);
    constexpr IntV hi = mask_of([](int p) { return C * p + c >= kTwo ? C * p + c - kTwo : 0; });
    constexpr IntV merge = mask_of([](int p) { return C * p + c < kTwo ? p : kLanes + p; });
    return __builtin_shuffle(__builtin_shuffle(x[0], x[1], lo), __builtin_shuffle(x[2], x[3], hi), merge);
  }
}

// Vector i of the interleaved order of one value per pixel g (lane l: pixel (16 i + l) / C).
template <int C, int i>
LL_INLINE FloatV spread(const FloatV& g) {
  constexpr IntV m = mask_of([](int l) { return (kLanes * i + l) / C; });
  return __builtin_shuffle(g, m);
}

// Vector i of the interleaved order of three channels ch[0..2] of 16 pixels (channel_of's inverse for C = 3):
// lane l is channel q % 3 of pixel q / 3, q = 16 i + l; channels 0 and 1 picked first, then channel 2 merged.
template <int i>
LL_INLINE FloatV interleave3(const FloatV* ch) {
  constexpr IntV first = mask_of([](int l) {
    const int q = kLanes * i + l;
    return q % 3 == 1 ? kLanes + q / 3 : q / 3;
  });
  constexpr IntV merge = mask_of([](int l) {
    const int q = kLanes * i + l;
    return q % 3 == 2 ? kLanes + q / 3 : l;
  });
  return __builtin_shuffle(__builtin_shuffle(ch[0], ch[1], first), ch[2], merge);
}

}  // namespace lowlight
