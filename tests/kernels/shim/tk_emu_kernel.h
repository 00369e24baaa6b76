// Included first by every kernel source of the emulated build (tests/kernels/emulate.py puts it there): HIP-CPU
// for the device side (__global__, threadIdx, __syncthreads, ...), and the launcher that the rewritten
// `k<<<grid, block, shared, stream>>>(args)` launches call.
//
// The launcher runs on the calling thread: blocks one after another, the threads of a block as HIP-CPU's fibers,
// which switch at __syncthreads. It checks the launch against an sm_90 GPU's limits first, gives each block
// dynamic shared memory filled with NaN (0xFF bytes: NaN in every floating type) between two guard zones, and
// reports a kernel that wrote into a guard zone. Errors are sticky until cudaGetLastError(), as on a GPU.
#pragma once

#include <hip/hip_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tk_emu_runtime.h"

#ifndef __align__
#define __align__(n) alignas(n)
#endif

namespace tk_emu {

// The limits of compute capability 9.0 (H100), from the CUDA programming guide's table of technical specifications.
constexpr uint32_t kMaxThreadsPerBlock = 1024;
constexpr uint32_t kMaxBlockDim[3] = {1024, 1024, 64};
constexpr uint64_t kMaxGridDim[3] = {2147483647ull, 65535, 65535};
constexpr size_t kMaxDynamicSharedBytes = 48 * 1024;  // without cudaFuncSetAttribute's opt-in
constexpr size_t kGuardBytes = 1024;                  // before and after the dynamic shared memory
constexpr unsigned char kFill = 0xFF;

struct LaunchState {
  const char* kernel = nullptr;
  std::vector<unsigned char> shared;  // guard | dynamic shared memory | guard
  size_t shared_bytes = 0;
  uint32_t block = 0;  // flat index of the running block
};

inline LaunchState& launch_state() {
  static thread_local LaunchState state;
  return state;
}

// The dynamic shared memory of the running block (what `extern __shared__ T name[];` becomes).
inline void* dynamic_shared() { return launch_state().shared.data() + kGuardBytes; }

inline std::string dims(const dim3& d) {
  std::ostringstream s;
  s << "(" << d.x << ", " << d.y << ", " << d.z << ")";
  return s.str();
}

// What `__launch_bounds__(max_threads, ...)` on a kernel becomes: the first statement of its body. A GPU refuses
// a launch with more threads per block than the bound (the kernel was compiled for fewer); every thread of the
// block returns here, so the block's barriers still match.
inline bool within_launch_bounds(const char* kernel, long max_threads, long = 0, long = 0) {
  const uint64_t threads = uint64_t(blockDim.x) * blockDim.y * blockDim.z;
  if (threads <= static_cast<uint64_t>(max_threads)) return true;
  std::ostringstream s;
  s << kernel << ": launched with " << threads << " threads per block, above its __launch_bounds__(" << max_threads
    << ") (too many resources requested for launch)";
  record_error(cudaErrorLaunchOutOfResources, s.str());
  return false;
}

inline void check_guards() {
  LaunchState& st = launch_state();
  const unsigned char* front = st.shared.data();
  const unsigned char* back = front + kGuardBytes + st.shared_bytes;
  size_t before = 0, after = 0;  // how far the block's writes reached beyond each end, in bytes
  for (size_t i = 0; i < kGuardBytes; ++i) {
    if (front[i] != kFill && before == 0) before = kGuardBytes - i;
    if (back[i] != kFill) after = i + 1;
  }
  if (before == 0 && after == 0) return;
  std::ostringstream s;
  s << st.kernel << ": block " << st.block << " wrote " << (after ? after : before) << " bytes "
    << (after ? "past the end" : "before the start") << " of its " << st.shared_bytes
    << " bytes of dynamic shared memory";
  record_error(cudaErrorIllegalAddress, s.str());
}

inline bool check_config(const char* kernel, const dim3& grid, const dim3& block, size_t shared) {
  const uint32_t b[3] = {block.x, block.y, block.z};
  const uint64_t g[3] = {grid.x, grid.y, grid.z};
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  std::ostringstream s;
  s << kernel << ": ";
  cudaError_t code = cudaSuccess;
  for (int i = 0; i < 3 && code == cudaSuccess; ++i) {
    if (b[i] == 0 || b[i] > kMaxBlockDim[i] || threads > kMaxThreadsPerBlock) {
      s << "block " << dims(block) << " exceeds sm_90's limits (x, y <= 1024, z <= 64, at most "
        << kMaxThreadsPerBlock << " threads)";
      code = cudaErrorInvalidConfiguration;
    } else if (g[i] == 0 || g[i] > kMaxGridDim[i]) {
      s << "grid " << dims(grid) << " exceeds sm_90's limits (x < 2^31, y, z <= 65535, none 0)";
      code = cudaErrorInvalidConfiguration;
    }
  }
  if (code == cudaSuccess && shared > kMaxDynamicSharedBytes) {
    s << shared << " bytes of dynamic shared memory, above the " << kMaxDynamicSharedBytes
      << " a kernel gets without cudaFuncSetAttribute";
    code = cudaErrorInvalidValue;
  }
  if (code == cudaSuccess && g[0] * g[1] * g[2] > UINT32_MAX) {
    s << "grid " << dims(grid) << " has more blocks than the emulator counts (2^32)";
    code = cudaErrorInvalidConfiguration;
  }
  if (code != cudaSuccess) record_error(code, s.str());
  return code == cudaSuccess;
}

// What `kernel<<<grid, block, shared, stream>>>(args...)` becomes: `fn` calls the kernel with the arguments.
template <typename F, typename Tuple>
void launch(const char* kernel, dim3 grid, dim3 block, size_t shared, cudaStream_t /*stream*/, F fn, Tuple args) {
  if (!check_config(kernel, grid, block, shared)) return;
  LaunchState& st = launch_state();
  st.kernel = kernel;
  st.shared_bytes = shared;
  st.shared.assign(shared + 2 * kGuardBytes, kFill);
  st.block = 0;
  bool first = true;
  // Thread 0 of a block runs first (HIP-CPU starts every block on its main fiber), so it prepares the block.
  auto body = [&]() {
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
      if (!first) {
        check_guards();
        ++st.block;
      }
      first = false;
      std::fill(st.shared.begin(), st.shared.end(), kFill);
    }
    if (error_pending()) return;  // the launch has failed: the remaining blocks do nothing
    std::apply(fn, args);
  };
  const std::tuple<> no_args;
  hip::detail::Tiled_domain domain{block, grid, static_cast<uint32_t>(shared), body};
  for_each_tile(domain, body, no_args);
  check_guards();
}

}  // namespace tk_emu
