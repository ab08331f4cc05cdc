// The input checks of lowlight::bilateral_apply and lowlight::bilateral_transform(_backward), shared by the CPU
// and CUDA kernels (ops.py's fake kernels make the same ones with torch._check).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

namespace lowlight {

constexpr int64_t kGridCoeffs = 12;  // a 3 x 4 affine matrix per grid cell (reference.GRID_COEFFS)

inline void check_bilateral_inputs(const at::Tensor& image, const at::Tensor& grid, const at::Tensor& guide) {
  const char* op = "bilateral_apply";
  TORCH_CHECK(image.dim() == 4, op, ": image must be 4-D (B, C, H, W), got ", image.dim(), "-D");
  const auto t = image.scalar_type();
  TORCH_CHECK(t == at::kByte || t == at::kUInt16 || t == at::kHalf || t == at::kBFloat16 || t == at::kFloat ||
                  t == at::kDouble,
              op, ": image must be uint8, uint16, float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(image.size(1) >= 1 && image.size(1) <= 4, op, ": image must have 1-4 channels, got ", image.size(1));
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1, op, ": image has an empty dimension: ", image.sizes());
  TORCH_CHECK(grid.dim() == 5, op, ": grid must be 5-D (B, ", kGridCoeffs, ", D, Gh, Gw), got ", grid.dim(), "-D");
  TORCH_CHECK(grid.scalar_type() == at::kFloat, op, ": grid must be float32, got ", grid.scalar_type());
  TORCH_CHECK(grid.device() == image.device(), op, ": grid is on ", grid.device(), " but image is on ",
              image.device());
  TORCH_CHECK(grid.size(0) == image.size(0), op, ": grid batch ", grid.size(0), " != image batch ", image.size(0));
  TORCH_CHECK(grid.size(1) == kGridCoeffs, op, ": grid must have ", kGridCoeffs, " coefficients (a 3 x 4 matrix) per cell, got ",
              grid.size(1));
  TORCH_CHECK(grid.size(2) >= 1 && grid.size(3) >= 1 && grid.size(4) >= 1, op, ": grid has an empty dimension: ",
              grid.sizes());
  TORCH_CHECK(guide.dim() == 1 && guide.size(0) == 4, op, ": guide must be (4,) (w_r, w_g, w_b, bias), got shape ",
              guide.sizes());
  TORCH_CHECK(guide.scalar_type() == at::kFloat, op, ": guide must be float32, got ", guide.scalar_type());
  TORCH_CHECK(guide.device() == image.device(), op, ": guide is on ", guide.device(), " but image is on ",
              image.device());
}

// bilateral_transform (the training path): a float RGB image x (B, 3, H, W), grid (B, 12, D, Gh, Gw) and guide (4,)
// all of x's dtype (float32 or float64) and device; grad_y (backward only): x's shape, dtype and device.
inline void check_bilateral_transform_inputs(const char* op, const at::Tensor& x, const at::Tensor& grid,
                                             const at::Tensor& guide) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D (B, 3, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.size(1) == 3, op, ": x must have 3 (RGB) channels, got ", x.size(1));
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, op, ": x has an empty dimension: ", x.sizes());
  TORCH_CHECK(grid.dim() == 5, op, ": grid must be 5-D (B, ", kGridCoeffs, ", D, Gh, Gw), got ", grid.dim(), "-D");
  TORCH_CHECK(guide.dim() == 1 && guide.size(0) == 4, op, ": guide must be (4,) (w_r, w_g, w_b, bias), got shape ",
              guide.sizes());
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"grid", grid}, {"guide", guide}}) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " is ", t.scalar_type(), " but x is ",
                x.scalar_type());
    TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
  }
  TORCH_CHECK(grid.size(0) == x.size(0), op, ": grid batch ", grid.size(0), " != x batch ", x.size(0));
  TORCH_CHECK(grid.size(1) == kGridCoeffs, op, ": grid must have ", kGridCoeffs,
              " coefficients (a 3 x 4 matrix) per cell, got ", grid.size(1));
  TORCH_CHECK(grid.size(2) >= 1 && grid.size(3) >= 1 && grid.size(4) >= 1, op, ": grid has an empty dimension: ",
              grid.sizes());
}

inline void check_bilateral_transform_grad(const char* op, const at::Tensor& grad_y, const at::Tensor& x) {
  TORCH_CHECK(grad_y.sizes() == x.sizes(), op, ": grad_y shape ", grad_y.sizes(), " != x shape ", x.sizes());
  TORCH_CHECK(grad_y.scalar_type() == x.scalar_type(), op, ": grad_y is ", grad_y.scalar_type(), " but x is ",
              x.scalar_type());
  TORCH_CHECK(grad_y.device() == x.device(), op, ": grad_y is on ", grad_y.device(), " but x is on ", x.device());
}

}  // namespace lowlight
