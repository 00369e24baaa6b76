// CUDA kernel for bias_act (definitions in bias_act.h): one thread per element, grid-stride loop.
#include <algorithm>
#include <cstdint>

#include "bias_act.h"

namespace translate_ops {

template <typename T, typename I>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(BiasActParams p, const T* __restrict__ x,
                                                            const T* __restrict__ b, const T* __restrict__ dy,
                                                            T* __restrict__ out) {
  const I n = static_cast<I>(p.numel);
  const I step = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    bias_act_element<T, I>(p, x, b, dy, out, i);
  }
}

// Enough blocks to fill any current GPU several times over; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 65536;

template <typename T>
cudaError_t bias_act_cuda_launch(const BiasActParams& p, const T* x, const T* b, const T* dy, T* out,
                                 cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>((p.numel + kThreads - 1) / kThreads, kMaxBlocks);
  // 32-bit indices when i + step cannot wrap: numel < 2^31 and step <= kMaxBlocks * kThreads < 2^31.
  if (p.numel <= INT32_MAX) {
    bias_act_kernel<T, uint32_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, x, b, dy, out);
  } else {
    bias_act_kernel<T, int64_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, x, b, dy, out);
  }
  return cudaGetLastError();
}

template cudaError_t bias_act_cuda_launch<float>(const BiasActParams&, const float*, const float*, const float*,
                                                 float*, cudaStream_t);
template cudaError_t bias_act_cuda_launch<double>(const BiasActParams&, const double*, const double*, const double*,
                                                  double*, cudaStream_t);
template cudaError_t bias_act_cuda_launch<c10::Half>(const BiasActParams&, const c10::Half*, const c10::Half*,
                                                     const c10::Half*, c10::Half*, cudaStream_t);
template cudaError_t bias_act_cuda_launch<c10::BFloat16>(const BiasActParams&, const c10::BFloat16*,
                                                         const c10::BFloat16*, const c10::BFloat16*,
                                                         c10::BFloat16*, cudaStream_t);

}  // namespace translate_ops
