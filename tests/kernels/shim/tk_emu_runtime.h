// The CUDA runtime names the operator layer (csrc/ops.cpp) and the kernels' headers use, for the emulated build
// (tests/kernels/emulate.py): error codes, a stream type and a sticky last error. No HIP here, so that the torch
// headers ops.cpp includes never see HIP-CPU's macros; the kernels' translation units add tk_emu_kernel.h.
#pragma once

#include <cstddef>
#include <string>

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
};
typedef enum cudaError cudaError_t;

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace tk_emu {

// The first error since the last cudaGetLastError(), with a message naming the kernel and what it broke.
struct ErrorState {
  cudaError_t code = cudaSuccess;
  std::string message;
};

inline ErrorState& error_state() {
  static thread_local ErrorState state;
  return state;
}

// Records an error unless one is pending (as on a GPU, the first fault is the one reported).
inline void record_error(cudaError_t code, const std::string& message) {
  ErrorState& s = error_state();
  if (s.code == cudaSuccess) {
    s.code = code;
    s.message = message;
  }
}

inline bool error_pending() { return error_state().code != cudaSuccess; }

}  // namespace tk_emu

inline cudaError_t cudaGetLastError() {
  tk_emu::ErrorState& s = tk_emu::error_state();
  const cudaError_t code = s.code;
  s.code = cudaSuccess;
  return code;
}

inline cudaError_t cudaPeekAtLastError() { return tk_emu::error_state().code; }

// The message of the last recorded error when it has this code (cudaGetLastError has cleared the code but keeps
// the message), else the error's name.
inline const char* cudaGetErrorString(cudaError_t code) {
  const tk_emu::ErrorState& s = tk_emu::error_state();
  if (code != cudaSuccess && !s.message.empty()) return s.message.c_str();
  switch (code) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
  }
  return "unknown error";
}
