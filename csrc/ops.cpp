// Schemas of the fused ops. Kernels register per device in csrc/cpu/*.cpp and csrc/cuda/*.cu.
// This file includes only torch/library.h so that editing a kernel never recompiles pybind11.
#include <torch/library.h>

TORCH_LIBRARY(lowlight, m) {
  // y = LE^n(x), step i uses alpha map min(i, k-1) of alpha's C*k channels, bilinearly resized
  // (align_corners=False) to x's size inside the kernel when the sizes differ.
  m.def("le_curve(Tensor x, Tensor alpha, int iterations) -> Tensor");
  m.def("le_curve_backward(Tensor grad_y, Tensor x, Tensor alpha, int iterations) -> (Tensor, Tensor)");
  // mean((G * (x - y))^2), G a normalized separable Gaussian, zero padding.
  m.def("blur_color_loss(Tensor x, Tensor y, float sigma, int ksize) -> Tensor");
  // d loss / d x (d loss / d y is its negative), scaled by the scalar grad.
  m.def("blur_color_loss_backward(Tensor grad, Tensor x, Tensor y, float sigma, int ksize) -> Tensor");
  // kind: "zero_dce" | "l1" | "iso"
  m.def("tv_loss(Tensor t, str kind) -> Tensor");
  m.def("tv_loss_backward(Tensor grad, Tensor t, str kind) -> Tensor");
  // The photo path (forward only): clamp(LE^n(image), 0, 1) in image's own dtype (uint8/uint16 scaled and
  // rounded to nearest even, float) and memory layout; alpha (B, 3*k, h, w) float32 RGB curve maps; gray
  // (C <= 2) gets the mean of the three curves; alpha channels are copied. See reference.photo_curve.
  m.def("photo_curve(Tensor image, Tensor alpha, int iterations) -> Tensor");
  // photo_curve for value-curve models: one curve per pixel on v = max of the colour channels (gray: the gray
  // value) with alpha (B, k, h, w) float32 (one map per step), every colour channel times v' / max(v, 1e-6),
  // clamped. A separate op rather than a flag of photo_curve: alpha's channels mean something else (k maps,
  // not 3k) and the fake kernel and checks stay per op. See reference.photo_value_curve.
  m.def("photo_value_curve(Tensor image, Tensor alpha, int iterations) -> Tensor");
  // A bilateral grid of affine colour transforms (HDRNet) applied to image (as photo_curve's, also float16 /
  // bfloat16) in its own dtype and layout: grid (B, 12, D, Gh, Gw) float32, a 3 x 4 matrix per cell, sliced
  // trilinearly at each pixel's position and guidance clamp(w . rgb + bias, 0, 1), guide = (w_r, w_g, w_b, bias)
  // float32; out = clamp(A [r, g, b, 1], 0, 1). Forward only (inference). See reference.bilateral_apply.
  m.def("bilateral_apply(Tensor image, Tensor grid, Tensor guide) -> Tensor");
  // bilateral_apply's affine step, not clamped, on a float RGB image x (B, 3, H, W) (float32 / float64) with
  // grid and guide of x's dtype: the bilateral-grid model's training path, differentiable in x, grid and guide.
  // Contiguous results. See reference.bilateral_transform.
  m.def("bilateral_transform(Tensor x, Tensor grid, Tensor guide) -> Tensor");
  m.def("bilateral_transform_backward(Tensor grad_y, Tensor x, Tensor grid, Tensor guide) -> (Tensor, Tensor, Tensor)");
  // float32 (B, C, height, width) block means of image (adaptive average pooling) in its own units.
  m.def("area_reduce(Tensor image, int height, int width) -> Tensor");
  // Noise-aware self-guided filter of an enhanced image x (B, 1|3, H, W) given the image it was enhanced from
  // (guide, same shape; noise variance noise_a * I + noise_b): luminance and chroma planes filtered with their
  // own eps weights and radii, eps scaled by the local gain mean(L_out) / mean(L_in). Forward only (inference).
  // See reference.guided_denoise.
  m.def("guided_denoise(Tensor x, Tensor guide, float noise_a, float noise_b, float luma, float chroma, "
        "int luma_radius, int chroma_radius) -> Tensor");
}
