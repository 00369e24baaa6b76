// bias_act: y = clamp(gain * act(x + b), -clamp, clamp), b broadcast along one dimension; and its derivatives.
//
// With z = x + b, a(z) the activation and m(z) = 1 where the clamp lets gain * a(z) through (clamp < 0: always),
//   forward (order 0):  y  = clamp(gain * a(z))
//   grad    (order k):  dz = dy * gain * a^(k)(z) * m(z),   k = 1, 2
// The gradient of order k is linear in dy and its derivative in z is the order k + 1, which is how the autograd
// formulas (priors/ops/_backend.py) chain them for double backward.
#pragma once

#include <cuda_runtime_api.h>

#include "common.h"

namespace translate_ops {

// The activations, numbered as the operator's `act` string is looked up in ops.cpp.
enum Act : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

constexpr int kMaxGradOrder = 2;
// softplus switches to the identity above this input, as torch.nn.functional.softplus does (threshold=20).
constexpr double kSoftplusThreshold = 20.0;
// SELU's constants (Klambauer et al. 2017), as in torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

struct BiasActParams {
  int64_t numel;
  int64_t inner;     // product of x's sizes after `dim`: element i sits in channel (i / inner) % channels
  int64_t channels;  // x.size(dim)
  int act;
  int order;  // 0: forward, 1 or 2: derivative of that order times dy
  double alpha, gain, clamp;  // clamp < 0: no clamp
};

// The order-th derivative of the activation at z (order 0: its value). Derivatives at the kinks follow torch's own
// backward formulas: relu'(0) = 0, leaky_relu'(0) = alpha, elu'(0) = 1, selu'(0) = scale * alpha.
template <typename A>
TK_HD A act_derivative(int act, A z, A alpha, int order) {
  const A one = A(1), zero = A(0);
  switch (act) {
    case kRelu:
      return order == 0 ? (z > zero ? z : zero) : (order == 1 ? (z > zero ? one : zero) : zero);
    case kLrelu:
      return order == 0 ? (z > zero ? z : z * alpha) : (order == 1 ? (z > zero ? one : alpha) : zero);
    case kTanh: {
      const A t = tk_tanh(z);
      return order == 0 ? t : (order == 1 ? one - t * t : A(-2) * t * (one - t * t));
    }
    case kSigmoid: {
      const A s = one / (one + tk_exp(-z));
      return order == 0 ? s : (order == 1 ? s * (one - s) : s * (one - s) * (one - A(2) * s));
    }
    case kElu:  // alpha = 1, as torch.nn.functional.elu's default
      if (z > zero) return order == 0 ? z : (order == 1 ? one : zero);
      return order == 0 ? tk_expm1(z) : tk_exp(z);
    case kSelu: {
      const A scale = A(kSeluScale), sa = A(kSeluScale * kSeluAlpha);
      if (z > zero) return order == 0 ? scale * z : (order == 1 ? scale : zero);
      return order == 0 ? sa * tk_expm1(z) : sa * tk_exp(z);
    }
    case kSoftplus: {
      if (z > A(kSoftplusThreshold)) return order == 0 ? z : (order == 1 ? one : zero);
      const A s = one / (one + tk_exp(-z));
      return order == 0 ? tk_log1p(tk_exp(z)) : (order == 1 ? s : s * (one - s));
    }
    case kSwish: {  // z * sigmoid(z)
      const A s = one / (one + tk_exp(-z));
      return order == 0 ? z * s
                        : (order == 1 ? s * (one + z * (one - s)) : s * (one - s) * (A(2) + z * (one - A(2) * s)));
    }
    default:  // kLinear
      return order == 0 ? z : (order == 1 ? one : zero);
  }
}

// Element i: out[i] = the forward value (order 0) or dy[i] times the order-th derivative. b and dy may be null
// (no bias; order 0). I is the index type: 32-bit where the tensor allows, as 64-bit division is slow on GPUs.
template <typename T, typename I>
TK_HD void bias_act_element(const BiasActParams& p, const T* x, const T* b, const T* dy, T* out, I i) {
  using A = typename AccType<T>::type;
  A z = static_cast<A>(x[i]);
  if (b != nullptr) z += static_cast<A>(b[(i / static_cast<I>(p.inner)) % static_cast<I>(p.channels)]);
  const A alpha = static_cast<A>(p.alpha), gain = static_cast<A>(p.gain), clamp = static_cast<A>(p.clamp);
  if (p.order == 0) {
    A v = gain * act_derivative(p.act, z, alpha, 0);
    if (clamp >= A(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
    out[i] = static_cast<T>(v);
    return;
  }
  if (clamp >= A(0)) {
    const A v = gain * act_derivative(p.act, z, alpha, 0);
    if (v > clamp || v < -clamp) {  // the clamp is flat here (its edges pass, as torch.clamp's gradient does)
      out[i] = static_cast<T>(A(0));
      return;
    }
  }
  out[i] = static_cast<T>(static_cast<A>(dy[i]) * gain * act_derivative(p.act, z, alpha, p.order));
}

// Launches the CUDA kernel on `stream` (defined in bias_act.cu for float, double, c10::Half, c10::BFloat16).
template <typename T>
cudaError_t bias_act_cuda_launch(const BiasActParams& p, const T* x, const T* b, const T* dy, T* out,
                                 cudaStream_t stream);

}  // namespace translate_ops
