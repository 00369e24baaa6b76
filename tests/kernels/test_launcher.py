"""The emulator's own checks (shim/tk_emu_kernel.h), on a small CUDA program rewritten and compiled like csrc/:
the sm_90 launch limits, __launch_bounds__, NaN-filled dynamic shared memory and its guard zones, the barrier."""
import shutil
import subprocess

import pytest

import emulate

PROGRAM = r"""
#include <cmath>
#include <cstdio>
#include <vector>

// Each thread writes its slot, then reads its neighbour's: right only if the barrier holds the threads back.
__global__ void __launch_bounds__(128) rotate(float* out) {
  extern __shared__ __align__(16) float s[];
  const int t = threadIdx.x;
  s[t] = static_cast<float>(blockIdx.x * 1000 + t);
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = s[(t + 1) % blockDim.x];
}

__global__ void past_the_end(float* out) {
  extern __shared__ float s[];
  s[threadIdx.x + 1] = 1.0f;  // the last thread writes one element past the end
}

__global__ void unwritten(float* out) {
  extern __shared__ float s[];
  if (threadIdx.x > 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = s[0];  // no thread wrote it
}

static void report(const char* what) {
  const cudaError_t e = cudaGetLastError();
  std::printf("%s: %d %s\n", what, static_cast<int>(e), e == cudaSuccess ? "ok" : cudaGetErrorString(e));
}

int main() {
  std::vector<float> out(4096, -1.0f);
  rotate<<<4, 128, 128 * sizeof(float)>>>(out.data());
  report("rotate");
  bool right = true;
  for (int b = 0; b < 4; ++b)
    for (int t = 0; t < 128; ++t) right &= out[b * 128 + t] == static_cast<float>(b * 1000 + (t + 1) % 128);
  std::printf("rotate values: %s\n", right ? "right" : "wrong");
  rotate<<<1, 256, 256 * sizeof(float)>>>(out.data());
  report("bounds");
  rotate<<<dim3(1, 65536), 64, 64 * sizeof(float)>>>(out.data());
  report("grid");
  rotate<<<1, dim3(32, 33), 0>>>(out.data());
  report("block");
  rotate<<<1, 64, 48 * 1024 + 4>>>(out.data());
  report("shared");
  past_the_end<<<2, 32, 32 * sizeof(float)>>>(out.data());
  report("overflow");
  unwritten<<<1, 32, 32 * sizeof(float)>>>(out.data());
  report("unwritten");
  std::printf("unwritten value: %s\n", std::isnan(out[0]) ? "nan" : "number");
  return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The program's output, one line per check."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    work = tmp_path_factory.mktemp("launcher")
    source = work / "probe.cu.cpp"
    source.write_text(emulate.rewrite(PROGRAM, "probe.cu", kernel_unit=True))
    cmd = [gxx, *emulate.CFLAGS, "-I", str(emulate.SHIM), "-I", str(emulate.HIP_CPU / "include"), str(source),
           "-o", str(work / "probe"), "-pthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    run = subprocess.run([str(work / "probe")], check=True, capture_output=True, text=True, timeout=60)
    return dict(line.split(": ", 1) for line in run.stdout.splitlines())


def test_a_valid_launch_runs_every_block_and_honours_the_barrier(probe):
    assert probe["rotate"] == "0 ok" and probe["rotate values"] == "right"


@pytest.mark.parametrize("check, expected", [
    ("bounds", "701 rotate: launched with 256 threads per block, above its __launch_bounds__(128)"),
    ("grid", "9 rotate: grid (1, 65536, 1) exceeds sm_90's limits"),
    ("block", "9 rotate: block (32, 33, 1) exceeds sm_90's limits"),
    ("shared", "1 rotate: 49156 bytes of dynamic shared memory, above the 49152"),
    ("overflow", "700 past_the_end: block 0 wrote 4 bytes past the end of its 128 bytes of dynamic shared memory"),
])
def test_launch_limits_and_shared_memory_faults_are_cuda_errors(probe, check, expected):
    assert probe[check].startswith(expected), probe[check]


def test_unwritten_shared_memory_reads_as_nan(probe):
    assert probe["unwritten"] == "0 ok" and probe["unwritten value"] == "nan"
