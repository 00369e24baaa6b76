// CUDA kernels for filtered_lrelu and its gradient (definitions in filtered_lrelu.h): one block per tile of the output
// (of dx), looping over (n, c) planes; the upsampled tile lives in shared memory only.
#include <algorithm>

#include "filtered_lrelu.h"

namespace translate_ops {

template <typename T>
__global__ void __launch_bounds__(kThreads)
    filtered_lrelu_kernel(FilteredLreluParams p, const T* __restrict__ x, const T* __restrict__ b,
                          const typename AccType<T>::type* __restrict__ fu,
                          const typename AccType<T>::type* __restrict__ fd, T* __restrict__ y) {
  using A = typename AccType<T>::type;
  // One untyped buffer: a typed `extern __shared__` array would clash between the template's instantiations.
  extern __shared__ __align__(16) unsigned char shared_raw[];
  const FilteredLreluShared n = filtered_lrelu_shared(p);
  A* s_fu = reinterpret_cast<A*>(shared_raw);
  A* s_fd = s_fu + n.fu;
  A* s_x = s_fd + n.fd;
  A* s_t = s_x + n.x;  // separable fu: the x pass
  A* s_v = s_x;        // separable fd: the x pass, over s_x and s_t once s_mid is done
  A* s_mid = s_x + n.front;

  const int tid = static_cast<int>(threadIdx.x);
  filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, p.flip, fu, s_fu, tid, p.threads);
  filtered_lrelu_load_filter(p.fd_w, p.fd_h, p.fd_separable, p.flip, fd, s_fd, tid, p.threads);
  const FilteredLreluTile o = filtered_lrelu_tile(p, static_cast<int>(blockIdx.x));
  for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
    __syncthreads();  // the filters are in place, and every thread is done with the previous plane's buffers
    filtered_lrelu_load_input(p, x, b, s_x, plane, Window{o.ix0, o.iy0, p.span_w, p.span_h}, tid);
    __syncthreads();
    if (p.fu_separable) {
      filtered_lrelu_up_x(p, s_x, s_fu, s_t, o, tid);
      __syncthreads();
    }
    filtered_lrelu_up(p, s_x, s_t, s_fu, s_mid, o, tid);
    __syncthreads();
    if (p.fd_separable) {
      filtered_lrelu_down_x(p, s_mid, s_fd, s_v, o, tid);
      __syncthreads();
    }
    filtered_lrelu_down(p, s_mid, s_v, s_fd, y, plane, o, tid);
  }
}

template <typename T>
cudaError_t filtered_lrelu_cuda_launch(const FilteredLreluParams& p, const T* x, const T* b,
                                       const typename AccType<T>::type* fu, const typename AccType<T>::type* fd,
                                       T* y, cudaStream_t stream) {
  using A = typename AccType<T>::type;
  const dim3 grid(static_cast<unsigned>(p.tiles_x * p.tiles_y),
                  static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
  const size_t shared = static_cast<size_t>(filtered_lrelu_shared_bytes<A>(p));
  filtered_lrelu_kernel<T><<<grid, p.threads, shared, stream>>>(p, x, b, fu, fd, y);
  return cudaGetLastError();
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    filtered_lrelu_grad_kernel(FilteredLreluParams p, FilteredLreluGradPlan g, const T* __restrict__ dy,
                               const T* __restrict__ x, const T* __restrict__ b,
                               const typename AccType<T>::type* __restrict__ fu,
                               const typename AccType<T>::type* __restrict__ fd, T* __restrict__ dx) {
  using A = typename AccType<T>::type;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  const FilteredLreluGradShared n = filtered_lrelu_grad_shared(p, g);
  A* s_fu = reinterpret_cast<A*>(shared_raw);
  A* s_fu_adj = s_fu + n.fu;
  A* s_fd_adj = s_fu_adj + n.fu;
  A* s_front = s_fd_adj + n.fd;
  A* s_x = s_front;  // then s_t
  A* s_dy = s_front;  // then s_w
  A* s_v = s_front;
  A* s_du = s_front + n.front;

  const int tid = static_cast<int>(threadIdx.x);
  filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, p.flip, fu, s_fu, tid, p.threads);
  filtered_lrelu_load_filter(p.fu_w, p.fu_h, p.fu_separable, !p.flip, fu, s_fu_adj, tid, p.threads);
  filtered_lrelu_load_filter(p.fd_w, p.fd_h, p.fd_separable, !p.flip, fd, s_fd_adj, tid, p.threads);
  const FilteredLreluGradTile o = filtered_lrelu_grad_tile(p, g, static_cast<int>(blockIdx.x));
  for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
    __syncthreads();  // the filters are in place, and every thread is done with the previous plane's buffers
    filtered_lrelu_load_input(p, x, b, s_x, plane, Window{o.zx0, o.zy0, g.span_w, g.span_h}, tid);
    __syncthreads();
    if (p.fu_separable) {
      filtered_lrelu_grad_up_x(p, g, s_x, s_fu, s_x + n.x, o, tid);
      __syncthreads();
    }
    filtered_lrelu_grad_up(p, g, s_x, s_x + n.x, s_fu, s_du, o, tid);
    __syncthreads();
    filtered_lrelu_load_dy(p, dy, s_dy, plane, Window{o.qx0, o.qy0, g.dspan_w, g.dspan_h}, tid);
    __syncthreads();
    if (p.fd_separable) {
      filtered_lrelu_grad_down_x(p, g, s_dy, s_fd_adj, s_dy + n.dy, o, tid);
      __syncthreads();
    }
    filtered_lrelu_grad_down(p, g, s_dy, s_dy + n.dy, s_fd_adj, s_du, o, tid);
    __syncthreads();
    if (p.fu_separable) {
      filtered_lrelu_grad_dx_x(p, g, s_du, s_fu_adj, s_v, o, tid);
      __syncthreads();
    }
    filtered_lrelu_grad_dx(p, g, s_du, s_v, s_fu_adj, dx, plane, o, tid);
  }
}

template <typename T>
cudaError_t filtered_lrelu_grad_cuda_launch(const FilteredLreluParams& p, const FilteredLreluGradPlan& g,
                                            const T* dy, const T* x, const T* b,
                                            const typename AccType<T>::type* fu,
                                            const typename AccType<T>::type* fd, T* dx, cudaStream_t stream) {
  using A = typename AccType<T>::type;
  const dim3 grid(static_cast<unsigned>(g.tiles_x * g.tiles_y),
                  static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
  const size_t shared = static_cast<size_t>(filtered_lrelu_grad_shared_bytes<A>(p, g));
  filtered_lrelu_grad_kernel<T><<<grid, p.threads, shared, stream>>>(p, g, dy, x, b, fu, fd, dx);
  return cudaGetLastError();
}

template cudaError_t filtered_lrelu_cuda_launch<float>(const FilteredLreluParams&, const float*, const float*,
                                                       const float*, const float*, float*, cudaStream_t);
template cudaError_t filtered_lrelu_cuda_launch<double>(const FilteredLreluParams&, const double*, const double*,
                                                        const double*, const double*, double*, cudaStream_t);
template cudaError_t filtered_lrelu_cuda_launch<c10::Half>(const FilteredLreluParams&, const c10::Half*,
                                                           const c10::Half*, const float*, const float*, c10::Half*,
                                                           cudaStream_t);
template cudaError_t filtered_lrelu_cuda_launch<c10::BFloat16>(const FilteredLreluParams&, const c10::BFloat16*,
                                                               const c10::BFloat16*, const float*, const float*,
                                                               c10::BFloat16*, cudaStream_t);

template cudaError_t filtered_lrelu_grad_cuda_launch<float>(const FilteredLreluParams&, const FilteredLreluGradPlan&,
                                                            const float*, const float*, const float*, const float*,
                                                            const float*, float*, cudaStream_t);
template cudaError_t filtered_lrelu_grad_cuda_launch<double>(const FilteredLreluParams&, const FilteredLreluGradPlan&,
                                                             const double*, const double*, const double*,
                                                             const double*, const double*, double*, cudaStream_t);
template cudaError_t filtered_lrelu_grad_cuda_launch<c10::Half>(const FilteredLreluParams&,
                                                                const FilteredLreluGradPlan&, const c10::Half*,
                                                                const c10::Half*, const c10::Half*, const float*,
                                                                const float*, c10::Half*, cudaStream_t);
template cudaError_t filtered_lrelu_grad_cuda_launch<c10::BFloat16>(const FilteredLreluParams&,
                                                                    const FilteredLreluGradPlan&,
                                                                    const c10::BFloat16*, const c10::BFloat16*,
                                                                    const c10::BFloat16*, const float*, const float*,
                                                                    c10::BFloat16*, cudaStream_t);

}  // namespace translate_ops
