// CPU code generation shared by the kernels: function multiversioning, forced inlining and the x86 streaming
// stores.
// x86-64 Linux with GCC gets AVX-512 / AVX2+FMA clones of the hot loops under the portable baseline build,
// picked at load time; every other target (aarch64, clang, ...) compiles the same loops once, plainly.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(LOWLIGHT_NO_X86)
#include <immintrin.h>
#define LOWLIGHT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define LOWLIGHT_X86 1
#else
#define LOWLIGHT_CLONES
#endif

// Helpers of the row kernels: inlined into each clone, so that every clone's loop is compiled for its target.
#define LL_INLINE inline __attribute__((always_inline))
#define LL_INLINE_LAMBDA __attribute__((always_inline))
