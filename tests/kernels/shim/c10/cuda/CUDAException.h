// Stand-in for c10/cuda/CUDAException.h in the emulated build: C10_CUDA_CHECK raises like the real one.
#pragma once

#include <c10/util/Exception.h>

#include "../../tk_emu_runtime.h"

#define C10_CUDA_CHECK(EXPR)                                                                          \
  do {                                                                                                \
    const cudaError_t tk_emu_err = (EXPR);                                                            \
    TORCH_CHECK(tk_emu_err == cudaSuccess, "CUDA error (emulated kernels): ",                         \
                cudaGetErrorString(tk_emu_err));                                                      \
  } while (0)

#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())
