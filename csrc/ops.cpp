// The translate_ops operators: schemas, argument checks, and the CPU and CUDA entry points.
//
// The CUDA entry points launch the kernels of upfirdn2d.cu / bias_act.cu / filtered_lrelu.cu. The CPU entry points
// run the kernels' own per-tile and per-element functions (upfirdn2d.h, bias_act.h, filtered_lrelu.h) one thread
// after another, stage by stage as the block's barriers order them, so the index arithmetic of the kernels is
// checked on machines without a GPU; the product's CPU path is the reference PyTorch code.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>
#include <optional>
#include <string>
#include <vector>

#include "bias_act.h"
#include "filtered_lrelu.h"
#include "upfirdn2d.h"

namespace translate_ops {
namespace {

void check_dtype(const at::Tensor& x, const char* op) {
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
              ": expected x of dtype float32, float64, float16 or bfloat16, got ", t);
}

at::ScalarType acc_dtype(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// ---------------------------------------------------------------------------------------------------- upfirdn2d

Upfirdn2dParams upfirdn2d_params(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y,
                                 int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                                 int64_t pad_y1, bool flip, double gain) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: expected x of shape (N, C, H, W), got ", x.sizes());
  check_dtype(x, "upfirdn2d");
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: expected a non-empty 2-D filter (fh, fw), got ", f.sizes());
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1, got up=(",
              up_x, ", ", up_y, "), down=(", down_x, ", ", down_y, ")");
  // Every position the kernel computes (upsampled and padded) must fit in an int.
  const int64_t up_w = x.size(3) * up_x + std::abs(pad_x0) + std::abs(pad_x1) + f.size(1);
  const int64_t up_h = x.size(2) * up_y + std::abs(pad_y0) + std::abs(pad_y1) + f.size(0);
  TORCH_CHECK(up_w * down_x < INT_MAX && up_h * down_y < INT_MAX, "upfirdn2d: input ", x.sizes(), " with up=(", up_x,
              ", ", up_y, ") and padding (", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1,
              ") is too large for 32-bit positions");
  // Filter positions over the upsampled, padded input, less one: out = span / down + 1 where span >= 0.
  const int64_t span_w = x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1);
  const int64_t span_h = x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0);
  TORCH_CHECK(span_w >= 0 && span_h >= 0, "upfirdn2d: input ", x.sizes(), " with up=(", up_x, ", ", up_y,
              "), padding (", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1, ") and a ", f.size(0), "x",
              f.size(1), " filter leaves no output");
  const int64_t out_w = span_w / down_x + 1;
  const int64_t out_h = span_h / down_y + 1;

  Upfirdn2dParams p{};
  p.planes = x.size(0) * x.size(1);
  p.channels = x.size(1);
  p.stride_n = x.stride(0);
  p.stride_c = x.stride(1);
  p.stride_h = x.stride(2);
  p.stride_w = x.stride(3);
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.filt_h = static_cast<int>(f.size(0));
  p.filt_w = static_cast<int>(f.size(1));
  p.flip = flip;
  p.gain = gain;
  return p;
}

template <typename T, typename A>
void upfirdn2d_cpu_kernel(const Upfirdn2dParams& p, const T* x, const A* f, T* y) {
  const int taps = p.filt_w * p.filt_h;
  std::vector<A> shared(static_cast<size_t>(taps) + static_cast<size_t>(p.span_w) * p.span_h);
  A* s_filt = shared.data();
  A* s_tile = s_filt + taps;
  for (int tid = 0; tid < p.threads; ++tid) upfirdn2d_load_filter(p, f, s_filt, tid);
  for (int tile = 0; tile < p.tiles_x * p.tiles_y; ++tile) {
    const TileOrigin o = upfirdn2d_tile_origin(p, tile);
    for (int64_t plane = 0; plane < p.planes; ++plane) {
      for (int tid = 0; tid < p.threads; ++tid) upfirdn2d_load_tile(p, x, s_tile, plane, o, tid);
      for (int tid = 0; tid < p.threads; ++tid) upfirdn2d_compute_tile(p, y, s_tile, s_filt, plane, o, tid);
    }
  }
}

template <bool kCuda>
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip,
                     double gain) {
  Upfirdn2dParams p =
      upfirdn2d_params(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip, gain);
  std::optional<c10::cuda::CUDAGuard> guard;
  if (kCuda) guard.emplace(x.device());
  const at::Tensor taps = f.to(x.device(), acc_dtype(x)).contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d", [&] {
    using A = typename AccType<scalar_t>::type;
    TORCH_CHECK(upfirdn2d_plan<A>(p), "upfirdn2d: a ", p.filt_h, "x", p.filt_w, " filter does not fit in ",
                kMaxSharedBytes, " bytes of shared memory; use impl='ref'");
    if constexpr (kCuda) {
      C10_CUDA_CHECK(upfirdn2d_cuda_launch<scalar_t>(p, x.const_data_ptr<scalar_t>(), taps.const_data_ptr<A>(),
                                                     y.mutable_data_ptr<scalar_t>(),
                                                     c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    } else {
      upfirdn2d_cpu_kernel<scalar_t, A>(p, x.const_data_ptr<scalar_t>(), taps.const_data_ptr<A>(),
                                        y.mutable_data_ptr<scalar_t>());
    }
  });
  return y;
}

// ----------------------------------------------------------------------------------------------------- bias_act

int act_index(c10::string_view act) {
  // In the order of bias_act.h's Act.
  static const char* const kNames[] = {"linear", "relu",     "lrelu",   "tanh", "sigmoid",
                                       "elu",    "selu",     "softplus", "swish"};
  for (int i = 0; i < static_cast<int>(sizeof(kNames) / sizeof(kNames[0])); ++i) {
    if (act == kNames[i]) return i;
  }
  TORCH_CHECK(false, "bias_act: act must be one of linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish; ",
              "got '", std::string(act), "'");
  return -1;  // not reached
}

template <bool kCuda>
at::Tensor bias_act_run(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& b, const at::Tensor* dy,
                        int64_t dim, c10::string_view act, double alpha, double gain, double clamp, int64_t order) {
  check_dtype(x, op);
  TORCH_CHECK(order >= 0 && order <= kMaxGradOrder, op, ": derivatives of order 1 to ", kMaxGradOrder,
              " are implemented, got order ", order);
  BiasActParams p{};
  p.act = act_index(act);
  p.order = static_cast<int>(order);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  p.numel = x.numel();
  p.inner = 1;
  p.channels = 1;
  const bool has_bias = b.has_value() && b->defined();
  if (has_bias) {
    TORCH_CHECK(dim >= 0 && dim < x.dim(), op, ": dim must be in [0, ", x.dim(), ") for x of shape ", x.sizes(),
                ", got ", dim);
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(dim), op, ": expected b of shape (", x.size(dim),
                ",) for x ", x.sizes(), " and dim=", dim, ", got ", b->sizes());
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(), op,
                ": b must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ",
                b->scalar_type(), ", ", b->device());
    for (int64_t d = dim + 1; d < x.dim(); ++d) p.inner *= x.size(d);
    p.channels = x.size(dim);
  }
  if (dy != nullptr) {
    TORCH_CHECK(dy->sizes() == x.sizes() && dy->scalar_type() == x.scalar_type() && dy->device() == x.device(), op,
                ": expected dy like x (", x.sizes(), ", ", x.scalar_type(), ", ", x.device(), "), got (", dy->sizes(),
                ", ", dy->scalar_type(), ", ", dy->device(), ")");
  }
  std::optional<c10::cuda::CUDAGuard> guard;
  if (kCuda) guard.emplace(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor bc = has_bias ? b->contiguous() : at::Tensor();
  const at::Tensor dyc = dy != nullptr ? dy->contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? bc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* dyp = dy != nullptr ? dyc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* outp = out.mutable_data_ptr<scalar_t>();
    if constexpr (kCuda) {
      C10_CUDA_CHECK(bias_act_cuda_launch<scalar_t>(p, xp, bp, dyp, outp,
                                                    c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    } else {
      if (p.numel <= INT32_MAX) {  // the index types of the CUDA kernel
        for (uint32_t i = 0; i < static_cast<uint32_t>(p.numel); ++i) bias_act_element(p, xp, bp, dyp, outp, i);
      } else {
        for (int64_t i = 0; i < p.numel; ++i) bias_act_element(p, xp, bp, dyp, outp, i);
      }
    }
  });
  return out;
}

template <bool kCuda>
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                    double alpha, double gain, double clamp) {
  return bias_act_run<kCuda>("bias_act", x, b, nullptr, dim, act, alpha, gain, clamp, 0);
}

template <bool kCuda>
at::Tensor bias_act_grad(const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                         c10::string_view act, double alpha, double gain, double clamp, int64_t order) {
  TORCH_CHECK(order >= 1, "bias_act_grad: expected a derivative order >= 1, got ", order);
  return bias_act_run<kCuda>("bias_act_grad", x, b, &dy, dim, act, alpha, gain, clamp, order);
}

// ------------------------------------------------------------------------------------------------ filtered_lrelu

// (w, h, separable) of a filter: 1-D filters are separable (w == h taps), 2-D ones are (fh, fw).
void filter_shape(const at::Tensor& f, const char* name, int& w, int& h, bool& separable) {
  TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0, "filtered_lrelu: expected ", name,
              " to be a non-empty 1-D (separable) or 2-D (fh, fw) filter, got ", f.sizes());
  separable = f.dim() == 1;
  w = static_cast<int>(f.size(f.dim() - 1));
  h = static_cast<int>(f.size(0));
}

FilteredLreluParams filtered_lrelu_params(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                          const std::optional<at::Tensor>& b, int64_t up_x, int64_t up_y,
                                          int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1,
                                          int64_t pad_y0, int64_t pad_y1, double gain, double slope, double clamp,
                                          bool flip) {
  TORCH_CHECK(x.dim() == 4, "filtered_lrelu: expected x of shape (N, C, H, W), got ", x.sizes());
  check_dtype(x, "filtered_lrelu");
  FilteredLreluParams p{};
  filter_shape(fu, "fu", p.fu_w, p.fu_h, p.fu_separable);
  filter_shape(fd, "fd", p.fd_w, p.fd_h, p.fd_separable);
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "filtered_lrelu: up and down must be >= 1, got up=(", up_x, ", ", up_y, "), down=(", down_x, ", ",
              down_y, ")");
  if (b.has_value() && b->defined()) {
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(1), "filtered_lrelu: expected b of shape (", x.size(1),
                ",) for x ", x.sizes(), ", got ", b->sizes());
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(),
                "filtered_lrelu: b must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ",
                b->scalar_type(), ", ", b->device());
  }
  // Every upsampled position the kernel computes must fit in an int.
  const int64_t up_w = x.size(3) * up_x + std::abs(pad_x0) + std::abs(pad_x1) + p.fu_w + p.fd_w;
  const int64_t up_h = x.size(2) * up_y + std::abs(pad_y0) + std::abs(pad_y1) + p.fu_h + p.fd_h;
  TORCH_CHECK(up_w * down_x < INT_MAX && up_h * down_y < INT_MAX, "filtered_lrelu: input ", x.sizes(),
              " with up=(", up_x, ", ", up_y, ") and padding (", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1,
              ") is too large for 32-bit positions");
  // Positions of the down filter over the upsampled image, less one: out = span / down + 1 where span >= 0.
  const int64_t span_w = x.size(3) * up_x + pad_x0 + pad_x1 - p.fu_w + 1 - p.fd_w;
  const int64_t span_h = x.size(2) * up_y + pad_y0 + pad_y1 - p.fu_h + 1 - p.fd_h;
  TORCH_CHECK(span_w >= 0 && span_h >= 0, "filtered_lrelu: input ", x.sizes(), " with up=(", up_x, ", ", up_y,
              "), padding (", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1, "), fu ", fu.sizes(), " and fd ",
              fd.sizes(), " leaves no output");
  p.planes = x.size(0) * x.size(1);
  p.channels = x.size(1);
  p.stride_n = x.stride(0);
  p.stride_c = x.stride(1);
  p.stride_h = x.stride(2);
  p.stride_w = x.stride(3);
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.out_h = static_cast<int>(span_h / down_y + 1);
  p.out_w = static_cast<int>(span_w / down_x + 1);
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.flip = flip;
  p.gain = gain;
  p.slope = slope;
  p.clamp = clamp;
  return p;
}

// The kernel's stages for each tile and plane, each run by every thread before the next one starts (the barriers).
template <typename T, typename A>
void filtered_lrelu_cpu_kernel(const FilteredLreluParams& p, const T* x, const T* b, const A* fu, const A* fd, T* y) {
  const FilteredLreluShared n = filtered_lrelu_shared(p);
  std::vector<A> shared(static_cast<size_t>(n.total()));
  A* s_fu = shared.data();
  A* s_fd = s_fu + n.fu;
  A* s_x = s_fd + n.fd;
  A* s_t = s_x + n.x;
  A* s_v = s_x;
  A* s_mid = s_x + n.front;
  for (int tid = 0; tid < p.threads; ++tid) {
    filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, p.flip, fu, s_fu, tid, p.threads);
    filtered_lrelu_load_filter(p.fd_w, p.fd_h, p.fd_separable, p.flip, fd, s_fd, tid, p.threads);
  }
  for (int tile = 0; tile < p.tiles_x * p.tiles_y; ++tile) {
    const FilteredLreluTile o = filtered_lrelu_tile(p, tile);
    for (int64_t plane = 0; plane < p.planes; ++plane) {
      const Window win{o.ix0, o.iy0, p.span_w, p.span_h};
      for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_load_input(p, x, b, s_x, plane, win, tid);
      if (p.fu_separable) {
        for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_up_x(p, s_x, s_fu, s_t, o, tid);
      }
      for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_up(p, s_x, s_t, s_fu, s_mid, o, tid);
      if (p.fd_separable) {
        for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_down_x(p, s_mid, s_fd, s_v, o, tid);
      }
      for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_down(p, s_mid, s_v, s_fd, y, plane, o, tid);
    }
  }
}

// The gradient kernel's stages, as filtered_lrelu_cpu_kernel runs the forward's.
template <typename T, typename A>
void filtered_lrelu_grad_cpu_kernel(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const T* dy,
                                    const T* x, const T* b, const A* fu, const A* fd, T* dx) {
  const FilteredLreluGradShared n = filtered_lrelu_grad_shared(p, g);
  std::vector<A> shared(static_cast<size_t>(n.total()));
  A* s_fu = shared.data();
  A* s_fu_adj = s_fu + n.fu;
  A* s_fd_adj = s_fu_adj + n.fu;
  A* s_front = s_fd_adj + n.fd;
  A* s_du = s_front + n.front;
  for (int tid = 0; tid < p.threads; ++tid) {
    filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, p.flip, fu, s_fu, tid, p.threads);
    filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, !p.flip, fu, s_fu_adj, tid, p.threads);
    filtered_lrelu_load_filter(p.fd_w, p.fd_h, p.fd_separable, !p.flip, fd, s_fd_adj, tid, p.threads);
  }
  for (int tile = 0; tile < g.tiles_x * g.tiles_y; ++tile) {
    const FilteredLreluGradTile o = filtered_lrelu_grad_tile(p, g, tile);
    const Window x_win{o.zx0, o.zy0, g.span_w, g.span_h}, dy_win{o.qx0, o.qy0, g.dspan_w, g.dspan_h};
    for (int64_t plane = 0; plane < p.planes; ++plane) {
      for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_load_input(p, x, b, s_front, plane, x_win, tid);
      if (p.fu_separable) {
        for (int tid = 0; tid < p.threads; ++tid) {
          filtered_lrelu_grad_up_x(p, g, s_front, s_fu, s_front + n.x, o, tid);
        }
      }
      for (int tid = 0; tid < p.threads; ++tid) {
        filtered_lrelu_grad_up(p, g, s_front, s_front + n.x, s_fu, s_du, o, tid);
      }
      for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_load_dy(p, dy, s_front, plane, dy_win, tid);
      if (p.fd_separable) {
        for (int tid = 0; tid < p.threads; ++tid) {
          filtered_lrelu_grad_down_x(p, g, s_front, s_fd_adj, s_front + n.dy, o, tid);
        }
      }
      for (int tid = 0; tid < p.threads; ++tid) {
        filtered_lrelu_grad_down(p, g, s_front, s_front + n.dy, s_fd_adj, s_du, o, tid);
      }
      if (p.fu_separable) {
        for (int tid = 0; tid < p.threads; ++tid) filtered_lrelu_grad_dx_x(p, g, s_du, s_fu_adj, s_front, o, tid);
      }
      for (int tid = 0; tid < p.threads; ++tid) {
        filtered_lrelu_grad_dx(p, g, s_du, s_front, s_fu_adj, dx, plane, o, tid);
      }
    }
  }
}

template <bool kCuda>
at::Tensor filtered_lrelu(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                          const std::optional<at::Tensor>& b, int64_t up_x, int64_t up_y, int64_t down_x,
                          int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, double gain,
                          double slope, double clamp, bool flip_filter) {
  FilteredLreluParams p = filtered_lrelu_params(x, fu, fd, b, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0,
                                                pad_y1, gain, slope, clamp, flip_filter);
  std::optional<c10::cuda::CUDAGuard> guard;
  if (kCuda) guard.emplace(x.device());
  const at::Tensor fu_taps = fu.to(x.device(), acc_dtype(x)).contiguous();
  const at::Tensor fd_taps = fd.to(x.device(), acc_dtype(x)).contiguous();
  const bool has_bias = b.has_value() && b->defined();
  const at::Tensor bc = has_bias ? b->contiguous() : at::Tensor();
  at::Tensor y = at::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "filtered_lrelu", [&] {
    using A = typename AccType<scalar_t>::type;
    TORCH_CHECK(filtered_lrelu_plan<A>(p), "filtered_lrelu: filters fu ", fu.sizes(), " and fd ", fd.sizes(),
                " with up=(", up_x, ", ", up_y, ") and down=(", down_x, ", ", down_y, ") do not fit in ",
                kMaxSharedBytes, " bytes of shared memory; use impl='ref'");
    const scalar_t* bp = has_bias ? bc.const_data_ptr<scalar_t>() : nullptr;
    if constexpr (kCuda) {
      C10_CUDA_CHECK(filtered_lrelu_cuda_launch<scalar_t>(
          p, x.const_data_ptr<scalar_t>(), bp, fu_taps.const_data_ptr<A>(), fd_taps.const_data_ptr<A>(),
          y.mutable_data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    } else {
      filtered_lrelu_cpu_kernel<scalar_t, A>(p, x.const_data_ptr<scalar_t>(), bp, fu_taps.const_data_ptr<A>(),
                                             fd_taps.const_data_ptr<A>(), y.mutable_data_ptr<scalar_t>());
    }
  });
  return y;
}

template <bool kCuda>
at::Tensor filtered_lrelu_grad(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                               const std::optional<at::Tensor>& b, int64_t up_x, int64_t up_y, int64_t down_x,
                               int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                               double gain, double slope, double clamp, bool flip_filter) {
  FilteredLreluParams p = filtered_lrelu_params(x, fu, fd, b, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0,
                                                pad_y1, gain, slope, clamp, flip_filter);
  TORCH_CHECK(dy.dim() == 4 && dy.size(0) == x.size(0) && dy.size(1) == x.size(1) && dy.size(2) == p.out_h &&
                  dy.size(3) == p.out_w && dy.scalar_type() == x.scalar_type() && dy.device() == x.device(),
              "filtered_lrelu_grad: expected dy of shape [", x.size(0), ", ", x.size(1), ", ", p.out_h, ", ",
              p.out_w, "] with x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ", dy.sizes(),
              " (", dy.scalar_type(), ", ", dy.device(), ")");
  p.threads = kThreads;
  std::optional<c10::cuda::CUDAGuard> guard;
  if (kCuda) guard.emplace(x.device());
  const at::Tensor fu_taps = fu.to(x.device(), acc_dtype(x)).contiguous();
  const at::Tensor fd_taps = fd.to(x.device(), acc_dtype(x)).contiguous();
  const bool has_bias = b.has_value() && b->defined();
  const at::Tensor bc = has_bias ? b->contiguous() : at::Tensor();
  const at::Tensor dyc = dy.contiguous();
  at::Tensor dx = at::empty({x.size(0), x.size(1), x.size(2), x.size(3)}, x.options());
  if (dx.numel() == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "filtered_lrelu_grad", [&] {
    using A = typename AccType<scalar_t>::type;
    FilteredLreluGradPlan g{};
    TORCH_CHECK(filtered_lrelu_grad_plan<A>(p, g), "filtered_lrelu_grad: filters fu ", fu.sizes(), " and fd ",
                fd.sizes(), " with up=(", up_x, ", ", up_y, ") and down=(", down_x, ", ", down_y,
                ") do not fit in ", kMaxSharedBytes, " bytes of shared memory; use impl='ref'");
    const scalar_t* bp = has_bias ? bc.const_data_ptr<scalar_t>() : nullptr;
    if constexpr (kCuda) {
      C10_CUDA_CHECK(filtered_lrelu_grad_cuda_launch<scalar_t>(
          p, g, dyc.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), bp, fu_taps.const_data_ptr<A>(),
          fd_taps.const_data_ptr<A>(), dx.mutable_data_ptr<scalar_t>(),
          c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    } else {
      filtered_lrelu_grad_cpu_kernel<scalar_t, A>(p, g, dyc.const_data_ptr<scalar_t>(),
                                                  x.const_data_ptr<scalar_t>(), bp, fu_taps.const_data_ptr<A>(),
                                                  fd_taps.const_data_ptr<A>(), dx.mutable_data_ptr<scalar_t>());
    }
  });
  return dx;
}

}  // namespace
}  // namespace translate_ops

TORCH_LIBRARY(translate_ops, m) {
  // The fake (meta) implementations and autograd formulas are registered from Python, in this module:
  m.set_python_module("priors.ops._backend");
  m.def(
      "upfirdn2d(Tensor x, Tensor f, int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, "
      "int pad_y0, int pad_y1, bool flip_filter, float gain) -> Tensor");
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp) -> Tensor");
  m.def(
      "bias_act_grad(Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp, "
      "int order) -> Tensor");
  m.def(
      "filtered_lrelu(Tensor x, Tensor fu, Tensor fd, Tensor? b, int up_x, int up_y, int down_x, int down_y, "
      "int pad_x0, int pad_x1, int pad_y0, int pad_y1, float gain, float slope, float clamp, bool flip_filter) "
      "-> Tensor");
  m.def(
      "filtered_lrelu_grad(Tensor dy, Tensor x, Tensor fu, Tensor fd, Tensor? b, int up_x, int up_y, int down_x, "
      "int down_y, int pad_x0, int pad_x1, int pad_y0, int pad_y1, float gain, float slope, float clamp, "
      "bool flip_filter) -> Tensor");
}

TORCH_LIBRARY_IMPL(translate_ops, CPU, m) {
  m.impl("upfirdn2d", &translate_ops::upfirdn2d<false>);
  m.impl("bias_act", &translate_ops::bias_act<false>);
  m.impl("bias_act_grad", &translate_ops::bias_act_grad<false>);
  m.impl("filtered_lrelu", &translate_ops::filtered_lrelu<false>);
  m.impl("filtered_lrelu_grad", &translate_ops::filtered_lrelu_grad<false>);
}

TORCH_LIBRARY_IMPL(translate_ops, CUDA, m) {
  m.impl("upfirdn2d", &translate_ops::upfirdn2d<true>);
  m.impl("bias_act", &translate_ops::bias_act<true>);
  m.impl("bias_act_grad", &translate_ops::bias_act_grad<true>);
  m.impl("filtered_lrelu", &translate_ops::filtered_lrelu<true>);
  m.impl("filtered_lrelu_grad", &translate_ops::filtered_lrelu_grad<true>);
}
