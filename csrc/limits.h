// Op limits and constants shared by the CPU and CUDA kernels. Their values live in lowlight_core/controls.py
// (with the user controls and the Python checks); every build passes them as LOWLIGHT_* macros
// (setup.py, lowlight_core/_native.py), so a build that forgot them fails here instead of drifting.
#pragma once

#include <cstdint>

#if !defined(LOWLIGHT_MAX_ITERATIONS) || !defined(LOWLIGHT_MAX_KSIZE) || !defined(LOWLIGHT_TV_ISO_EPS) || \
    !defined(LOWLIGHT_DENOISE_GAIN_FLOOR) || !defined(LOWLIGHT_DENOISE_EPS_FLOOR)
#error "build with the LOWLIGHT_* macros of lowlight_core.controls.native_defines() (setup.py does)"
#endif

namespace lowlight {

constexpr int64_t kMaxIterations = LOWLIGHT_MAX_ITERATIONS;  // curve steps (size of per-pixel step arrays)
constexpr int64_t kMaxKsize = LOWLIGHT_MAX_KSIZE;            // blur_color_loss Gaussian
constexpr double kTvIsoEps = LOWLIGHT_TV_ISO_EPS;            // tv_loss "iso": sqrt(dh^2 + dw^2 + eps)
constexpr double kDenoiseGainFloor = LOWLIGHT_DENOISE_GAIN_FLOOR;  // guided_denoise: mean(in) floor of the gain
constexpr double kDenoiseEpsFloor = LOWLIGHT_DENOISE_EPS_FLOOR;    // guided_denoise: least eps of the chroma estimate

}  // namespace lowlight
