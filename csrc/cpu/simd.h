// CPU code generation shared by the kernels: function multiversioning and the x86 streaming stores.
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
