// CUDA kernel for upfirdn2d (definitions in upfirdn2d.h): one block per output tile, looping over (n, c) planes.
#include <algorithm>

#include "upfirdn2d.h"

namespace translate_ops {

template <typename T>
__global__ void __launch_bounds__(kThreads) upfirdn2d_kernel(Upfirdn2dParams p, const T* __restrict__ x,
                                                             const typename AccType<T>::type* __restrict__ f,
                                                             T* __restrict__ y) {
  using A = typename AccType<T>::type;
  // One untyped buffer: a typed `extern __shared__` array would clash between the template's instantiations.
  extern __shared__ __align__(16) unsigned char shared_raw[];
  A* s_filt = reinterpret_cast<A*>(shared_raw);
  A* s_tile = s_filt + p.filt_w * p.filt_h;

  const int tid = static_cast<int>(threadIdx.x);
  upfirdn2d_load_filter(p, f, s_filt, tid);
  const TileOrigin o = upfirdn2d_tile_origin(p, static_cast<int>(blockIdx.x));
  for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
    __syncthreads();  // the filter is in place, and every thread is done with the previous plane's window
    upfirdn2d_load_tile(p, x, s_tile, plane, o, tid);
    __syncthreads();
    upfirdn2d_compute_tile(p, y, s_tile, s_filt, plane, o, tid);
  }
}

template <typename T>
cudaError_t upfirdn2d_cuda_launch(const Upfirdn2dParams& p, const T* x, const typename AccType<T>::type* f, T* y,
                                  cudaStream_t stream) {
  using A = typename AccType<T>::type;
  const dim3 grid(static_cast<unsigned>(p.tiles_x * p.tiles_y),
                  static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
  const size_t shared = static_cast<size_t>(upfirdn2d_shared_bytes<A>(p));
  upfirdn2d_kernel<T><<<grid, p.threads, shared, stream>>>(p, x, f, y);
  return cudaGetLastError();
}

template cudaError_t upfirdn2d_cuda_launch<float>(const Upfirdn2dParams&, const float*, const float*, float*,
                                                  cudaStream_t);
template cudaError_t upfirdn2d_cuda_launch<double>(const Upfirdn2dParams&, const double*, const double*, double*,
                                                   cudaStream_t);
template cudaError_t upfirdn2d_cuda_launch<c10::Half>(const Upfirdn2dParams&, const c10::Half*, const float*,
                                                      c10::Half*, cudaStream_t);
template cudaError_t upfirdn2d_cuda_launch<c10::BFloat16>(const Upfirdn2dParams&, const c10::BFloat16*,
                                                          const float*, c10::BFloat16*, cudaStream_t);

}  // namespace translate_ops
