// Shared by the CUDA kernels (.cu, compiled by nvcc) and the C++ operator layer (ops.cpp, compiled by the host
// compiler). Everything here is plain arithmetic on pointers: no ATen, so nvcc never parses the big torch headers.
#pragma once

#include <math.h>

#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

// Per-element and per-tile code is written once and compiled for both sides: the CUDA kernels run it on the GPU,
// the CPU kernels run the very same functions thread by thread, which lets a machine without a GPU check the index
// arithmetic of the kernels against the reference ops.
#if defined(__CUDACC__)
#define TK_HD __host__ __device__ __forceinline__
#else
#define TK_HD inline
#endif

namespace translate_ops {

// Arithmetic type: half and bfloat16 inputs compute in float, double stays double.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// Dynamic shared memory a block may use without an opt-in attribute (every architecture since sm_20).
constexpr int kMaxSharedBytes = 48 * 1024;
constexpr int kThreads = 256;

// Floor division and a non-negative remainder, for a possibly negative numerator and a positive divisor.
TK_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
TK_HD int ceil_div(int a, int b) { return -floor_div(-a, b); }
TK_HD int pos_mod(int a, int b) { return ((a % b) + b) % b; }

TK_HD float tk_exp(float v) { return expf(v); }
TK_HD double tk_exp(double v) { return exp(v); }
TK_HD float tk_expm1(float v) { return expm1f(v); }
TK_HD double tk_expm1(double v) { return expm1(v); }
TK_HD float tk_log1p(float v) { return log1pf(v); }
TK_HD double tk_log1p(double v) { return log1p(v); }
TK_HD float tk_tanh(float v) { return tanhf(v); }
TK_HD double tk_tanh(double v) { return tanh(v); }

}  // namespace translate_ops
