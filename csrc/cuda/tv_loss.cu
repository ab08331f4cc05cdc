// CUDA kernels of tv_loss(t, kind) and its backward, each one fused pass over t (see reference.tv_loss):
//   zero_dce: 2 (S(dh^2) / ((H-1) W) + S(dw^2) / (H (W-1))) / B
//   l1:       mean |dh| + mean |dw|
//   iso:      mean sqrt(dh'^2 + dw'^2 + eps), dh', dw' zero past the last row / column
// dh = t[i+1, j] - t[i, j], dw = t[i, j+1] - t[i, j]; a direction without neighbours contributes 0.
// Per-thread sums in double, reduced per block, then summed in a fixed order (finalize_loss).
#include <torch/library.h>

#include <string_view>
#include <type_traits>

#include "../tv_loss.h"
#include "common.cuh"

namespace lowlight_cuda {
namespace {

using lowlight::TvKind;
constexpr double kIsoEps = lowlight::kTvIsoEps;

// lowlight::TvNorm as multipliers: loss = post * (scale_h * S_h + scale_w * S_w), S_h / S_w the sums over the
// vertical / horizontal terms (iso: S_h is the whole sum), summed by finalize_loss. The backward uses
// coef_h / coef_w = the derivative of the loss per unit of a term's derivative.
struct TvScales {
  double scale_h, scale_w, post;
};

TvScales tv_scales(const lowlight::TvNorm& n) {
  return {n.has_h ? inv_or_inf(n.count_h) : 0.0, n.has_w ? inv_or_inf(n.count_w) : 0.0,
          n.outer * inv_or_inf(n.batch)};
}

lowlight::TvNorm tv_norm(TvKind kind, const at::Tensor& t) {
  return lowlight::tv_norm(kind, t.size(0), t.size(1), t.size(2), t.size(3));
}

template <typename acc_t>
__device__ __forceinline__ acc_t sign_of(acc_t v) {
  return static_cast<acc_t>((v > acc_t(0)) - (v < acc_t(0)));  // sign(0) = 0, as autograd's abs
}

template <typename scalar_t, typename index_t, TvKind KIND>
__global__ void __launch_bounds__(kThreads)
    tv_forward_kernel(const scalar_t* __restrict__ t, double* __restrict__ partials, index_t total, int H, int W) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t HW = static_cast<index_t>(H) * W;
  double sum_h = 0.0, sum_w = 0.0;
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const index_t q = p % HW;
    const int i = static_cast<int>(q / W), j = static_cast<int>(q % W);
    const acc_t v = static_cast<acc_t>(t[p]);
    const acc_t dh = i + 1 < H ? static_cast<acc_t>(t[p + W]) - v : acc_t(0);
    const acc_t dw = j + 1 < W ? static_cast<acc_t>(t[p + 1]) - v : acc_t(0);
    if constexpr (KIND == TvKind::ZeroDce) {
      sum_h += static_cast<double>(dh * dh);
      sum_w += static_cast<double>(dw * dw);
    } else if constexpr (KIND == TvKind::L1) {
      sum_h += static_cast<double>(fabs(dh));
      sum_w += static_cast<double>(fabs(dw));
    } else {
      sum_h += static_cast<double>(sqrt(dh * dh + dw * dw + static_cast<acc_t>(kIsoEps)));
    }
  }
  sum_h = block_sum(sum_h);
  sum_w = block_sum(sum_w);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sum_h;
    partials[2 * blockIdx.x + 1] = sum_w;
  }
}

template <typename scalar_t, typename index_t, TvKind KIND>
__global__ void __launch_bounds__(kThreads)
    tv_backward_kernel(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad, scalar_t* __restrict__ out,
                       index_t total, int H, int W, at::opmath_type<scalar_t> coef_h,
                       at::opmath_type<scalar_t> coef_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t HW = static_cast<index_t>(H) * W;
  const acc_t upstream = static_cast<acc_t>(grad[0]);
  const auto val = [&](index_t p) { return static_cast<acc_t>(t[p]); };
  LOWLIGHT_GRID_STRIDE(index_t, p, total) {
    const index_t q = p % HW;
    const int i = static_cast<int>(q / W), j = static_cast<int>(q % W);
    const acc_t v = val(p);
    acc_t g = acc_t(0);
    if constexpr (KIND == TvKind::Iso) {
      // Pixel (i, j) appears in its own term and in those of (i-1, j) (as dh') and (i, j-1) (as dw').
      // inv_norm(p, i, j, dh, dw): the forward differences at pixel p and 1 / sqrt(dh^2 + dw^2 + eps).
      const auto inv_norm = [&](index_t pp, int ii, int jj, acc_t& dh, acc_t& dw) {
        dh = ii + 1 < H ? val(pp + W) - val(pp) : acc_t(0);
        dw = jj + 1 < W ? val(pp + 1) - val(pp) : acc_t(0);
        return acc_t(1) / sqrt(dh * dh + dw * dw + static_cast<acc_t>(kIsoEps));
      };
      acc_t dh, dw;
      acc_t inv = inv_norm(p, i, j, dh, dw);  // separate statements: operand order is unspecified
      g = -(inv * (dh + dw));
      if (i > 0) {
        inv = inv_norm(p - W, i - 1, j, dh, dw);
        g += inv * dh;
      }
      if (j > 0) {
        inv = inv_norm(p - 1, i, j - 1, dh, dw);
        g += inv * dw;
      }
      g *= coef_h;
    } else {
      // d/dt[i,j] of a term f(dh) summed over rows: f'(dh[i-1, j]) - f'(dh[i, j]); same for columns.
      // zero_dce: f'(d) = 2 d (folded into coef); l1: f'(d) = sign(d).
      const auto deriv = [](acc_t d) {
        if constexpr (KIND == TvKind::L1) {
          return sign_of(d);
        } else {
          return d;
        }
      };
      acc_t gh = acc_t(0), gw = acc_t(0);
      if (i + 1 < H) gh -= deriv(val(p + W) - v);
      if (i > 0) gh += deriv(v - val(p - W));
      if (j + 1 < W) gw -= deriv(val(p + 1) - v);
      if (j > 0) gw += deriv(v - val(p - 1));
      g = coef_h * gh + coef_w * gw;
    }
    out[p] = static_cast<scalar_t>(g * upstream);
  }
}

// ------------------------------------------------------------------------------------------ host side

void check_tv_args(const char* op, const at::Tensor& t) { check_cuda_image(op, "t", t); }

template <typename scalar_t, typename index_t, TvKind KIND>
void launch_tv_forward(const at::Tensor& t, at::Tensor& partials, unsigned int blocks, cudaStream_t stream) {
  tv_forward_kernel<scalar_t, index_t, KIND><<<blocks, kThreads, 0, stream>>>(
      t.data_ptr<scalar_t>(), partials.data_ptr<double>(), static_cast<index_t>(t.numel()),
      static_cast<int>(t.size(2)), static_cast<int>(t.size(3)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename index_t, TvKind KIND>
void launch_tv_backward(const at::Tensor& t, const at::Tensor& grad, at::Tensor& out, double coef_h, double coef_w,
                        cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  tv_backward_kernel<scalar_t, index_t, KIND><<<grid_for(t.numel()), kThreads, 0, stream>>>(
      t.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), static_cast<index_t>(t.numel()),
      static_cast<int>(t.size(2)), static_cast<int>(t.size(3)), static_cast<acc_t>(coef_h),
      static_cast<acc_t>(coef_w));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <TvKind K>
using KindTag = std::integral_constant<TvKind, K>;

// Calls fn(index_t{}, KindTag<kind>{}) for the runtime kind and index width.
template <typename Fn>
void dispatch_tv(TvKind kind, int64_t numel, Fn&& fn) {
  const auto with_kind = [&](auto index_tag) {
    switch (kind) {
      case TvKind::ZeroDce: fn(index_tag, KindTag<TvKind::ZeroDce>{}); break;
      case TvKind::L1: fn(index_tag, KindTag<TvKind::L1>{}); break;
      case TvKind::Iso: fn(index_tag, KindTag<TvKind::Iso>{}); break;
    }
  };
  if (fits_int32(numel)) {
    with_kind(int32_t{});
  } else {
    with_kind(int64_t{});
  }
}

at::Tensor tv_loss_cuda(const at::Tensor& t_in, std::string_view kind_name) {
  const char* op = "tv_loss";
  check_tv_args(op, t_in);
  const TvKind kind = lowlight::parse_tv_kind(op, kind_name);
  const c10::cuda::CUDAGuard guard(t_in.device());
  const at::Tensor t = t_in.contiguous();
  at::Tensor loss = at::empty({}, t.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t nblocks = t.numel() > 0 ? grid_for(t.numel()) : 0;
  at::Tensor partials = loss_partials(nblocks, t);
  const TvScales sc = tv_scales(tv_norm(kind, t));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "tv_loss_cuda", [&] {
    if (nblocks > 0) {
      dispatch_tv(kind, t.numel(), [&](auto index_tag, auto kind_tag) {
        launch_tv_forward<scalar_t, decltype(index_tag), decltype(kind_tag)::value>(
            t, partials, static_cast<unsigned int>(nblocks), stream);
      });
    }
    finalize_loss<scalar_t>(partials, nblocks, sc.scale_h, sc.scale_w, sc.post, loss, stream);
  });
  return loss;
}

at::Tensor tv_loss_backward_cuda(const at::Tensor& grad_in, const at::Tensor& t_in, std::string_view kind_name) {
  const char* op = "tv_loss_backward";
  check_tv_args(op, t_in);
  const TvKind kind = lowlight::parse_tv_kind(op, kind_name);
  const c10::cuda::CUDAGuard guard(t_in.device());
  const at::Tensor grad = checked_scalar_grad(op, grad_in, t_in);
  const at::Tensor t = t_in.contiguous();
  at::Tensor grad_t = at::empty(t.sizes(), t.options());
  if (t.numel() == 0) return grad_t;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const lowlight::TvNorm norm = tv_norm(kind, t);
  const TvScales sc = tv_scales(norm);
  // zero_dce: the loss has post * scale * d^2, so its derivative carries slope 2 * post * scale.
  const double coef_h = norm.slope * sc.post * sc.scale_h, coef_w = norm.slope * sc.post * sc.scale_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "tv_loss_backward_cuda", [&] {
    dispatch_tv(kind, t.numel(), [&](auto index_tag, auto kind_tag) {
      launch_tv_backward<scalar_t, decltype(index_tag), decltype(kind_tag)::value>(t, grad, grad_t, coef_h, coef_w,
                                                                                  stream);
    });
  });
  return grad_t;
}

}  // namespace
}  // namespace lowlight_cuda

TORCH_LIBRARY_IMPL(lowlight, CUDA, m) {
  m.impl("tv_loss", &lowlight_cuda::tv_loss_cuda);
  m.impl("tv_loss_backward", &lowlight_cuda::tv_loss_backward_cuda);
}
