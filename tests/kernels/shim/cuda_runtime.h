// Stand-in for the CUDA runtime header in the emulated build (tests/kernels/emulate.py).
#pragma once
#include "tk_emu_runtime.h"
