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
}
