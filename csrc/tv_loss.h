// tv_loss's kinds and normalisation, shared by the CPU and CUDA kernels (the formulas: reference.tv_loss).
//
// S_h / S_w are the sums of the penalties of the vertical / horizontal differences (iso: S_h the sum of the
// whole terms, S_w unused): loss = outer * (S_h / count_h + S_w / count_w) / batch, a direction without
// differences (H == 1 or W == 1) contributing 0. B == 0 divides by 0: nan, as the reference's mean of nothing.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace lowlight {

enum class TvKind { ZeroDce, L1, Iso };

inline TvKind parse_tv_kind(const char* op, std::string_view kind) {
  if (kind == "zero_dce") return TvKind::ZeroDce;
  if (kind == "l1") return TvKind::L1;
  TORCH_CHECK(kind == "iso", op, ": kind must be one of ('zero_dce', 'l1', 'iso'), got '", std::string(kind), "'");
  return TvKind::Iso;
}

struct TvNorm {
  bool has_h, has_w;        // whether the vertical / horizontal terms exist
  double count_h, count_w;  // what each direction's sum is divided by
  double outer, batch;      // the factor and divisor of the sum of both directions
  double slope;             // d penalty / d difference = slope * the penalty's unit slope (square: 2 d)

  // The loss from the two sums (the CPU kernels divide in this order; CUDA multiplies by the reciprocals).
  double loss(double sh, double sw) const {
    const double th = has_h ? sh / count_h : 0.0, tw = has_w ? sw / count_w : 0.0;
    return outer * (th + tw) / batch;
  }
  // d loss / d (a vertical / horizontal term's unit slope), times the incoming gradient g.
  double coef_h(double g) const { return has_h ? outer * slope * g / (batch * count_h) : 0.0; }
  double coef_w(double g) const { return has_w ? outer * slope * g / (batch * count_w) : 0.0; }
};

inline TvNorm tv_norm(TvKind kind, int64_t B, int64_t C, int64_t H, int64_t W) {
  const double b = static_cast<double>(B), c = static_cast<double>(C), h = static_cast<double>(H),
               w = static_cast<double>(W);
  switch (kind) {
    case TvKind::ZeroDce:  // 2 (S(dh^2) / ((H-1) W) + S(dw^2) / (H (W-1))) / B: summed over channels
      return {H > 1, W > 1, (h - 1) * w, h * (w - 1), 2.0, b, 2.0};
    case TvKind::L1:  // mean |dh| + mean |dw|
      return {H > 1, W > 1, b * c * (h - 1) * w, b * c * h * (w - 1), 1.0, 1.0, 1.0};
    case TvKind::Iso:  // mean over every pixel of sqrt(dh^2 + dw^2 + eps)
    default:
      return {true, false, b * c * h * w, 0.0, 1.0, 1.0, 1.0};
  }
}

}  // namespace lowlight
