// upfirdn2d: upsample by zero insertion, pad (or crop), convolve with a 2-D FIR filter, keep every down-th sample.
//
// Definitions (one axis; the other is the same). x has in_w samples. The upsampled signal is
//   xu[u] = x[u / up] when u % up == 0 and 0 <= u < in_w * up, else 0,
// the padded signal is xp[m] = xu[m - pad0] (pad0 < 0 crops), and the output is
//   y[o] = gain * sum_{b < filt_w} xp[o * down + b] * k[b],   out_w = (in_w * up + pad0 + pad1 - filt_w) / down + 1,
// where k is the filter reversed (a true convolution), or the filter itself when flip is set (a correlation).
//
// The kernel tiles the output: a block computes tile_h x tile_w outputs of one (n, c) plane from a span_h x span_w
// window of x held in shared memory, so every input sample is read from global memory once per tile. Only the
// filter taps that meet a non-zero upsampled sample are visited: for output o, taps b = b0, b0 + up, ... with
// (o * down - pad0 + b) % up == 0, reading x[(o * down - pad0 + b) / up].
#pragma once

#include <cuda_runtime_api.h>

#include "common.h"

namespace translate_ops {

struct Upfirdn2dParams {
  int64_t planes;    // N * C
  int64_t channels;  // C, to split a plane index into (n, c)
  int64_t stride_n, stride_c, stride_h, stride_w;  // of x, in elements (any layout)
  int in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // leading padding; the trailing padding only enters out_w / out_h
  int filt_w, filt_h;
  bool flip;
  double gain;
  int tile_w, tile_h;  // outputs per block
  int span_w, span_h;  // input samples a tile reads along x / y
  int tiles_x, tiles_y;
  int threads;
};

// Input samples one tile of `tile` outputs reads along an axis: the taps of the tile cover
// (tile - 1) * down + filt consecutive upsampled positions, of which at most this many are multiples of up.
inline int upfirdn2d_span(int tile, int up, int down, int filt) { return ((tile - 1) * down + filt - 1) / up + 1; }

template <typename A>
inline int64_t upfirdn2d_shared_bytes(const Upfirdn2dParams& p) {
  return static_cast<int64_t>(sizeof(A)) *
         (static_cast<int64_t>(p.filt_w) * p.filt_h + static_cast<int64_t>(p.span_w) * p.span_h);
}

inline int round_up_pow2(int v, int cap) {
  int r = 1;
  while (r < v && r < cap) r *= 2;
  return r;
}

// Picks the tile (at most 64 x 32 outputs, no larger than the output) and shrinks it until the filter and the input
// window fit in shared memory. Returns false when even a single output does not fit (a filter that is too large).
template <typename A>
inline bool upfirdn2d_plan(Upfirdn2dParams& p) {
  p.threads = kThreads;
  p.tile_w = round_up_pow2(p.out_w, 64);
  p.tile_h = round_up_pow2(p.out_h, 32);
  for (;;) {
    p.span_w = upfirdn2d_span(p.tile_w, p.up_x, p.down_x, p.filt_w);
    p.span_h = upfirdn2d_span(p.tile_h, p.up_y, p.down_y, p.filt_h);
    if (upfirdn2d_shared_bytes<A>(p) <= kMaxSharedBytes) break;
    if (p.tile_w == 1 && p.tile_h == 1) return false;
    if (p.tile_h > 1 && (p.tile_h * 2 >= p.tile_w || p.tile_w == 1)) {
      p.tile_h = (p.tile_h + 1) / 2;
    } else {
      p.tile_w = (p.tile_w + 1) / 2;
    }
  }
  p.tiles_x = (p.out_w + p.tile_w - 1) / p.tile_w;
  p.tiles_y = (p.out_h + p.tile_h - 1) / p.tile_h;
  return true;
}

// Where a tile starts: its first output (ox0, oy0) and the first input sample of its window (ix0, iy0), the first
// sample whose upsampled position ix * up is at or after the tile's first tap position ox0 * down - pad0.
struct TileOrigin {
  int ox0, oy0, ix0, iy0;
};

TK_HD TileOrigin upfirdn2d_tile_origin(const Upfirdn2dParams& p, int tile) {
  TileOrigin o;
  o.ox0 = (tile % p.tiles_x) * p.tile_w;
  o.oy0 = (tile / p.tiles_x) * p.tile_h;
  o.ix0 = ceil_div(o.ox0 * p.down_x - p.pad_x0, p.up_x);
  o.iy0 = ceil_div(o.oy0 * p.down_y - p.pad_y0, p.up_y);
  return o;
}

// Thread `tid` of the block stores its share of the taps, in the order the sum visits them:
// s_filt[a * filt_w + b] multiplies xp[oy * down_y + a][ox * down_x + b].
template <typename A>
TK_HD void upfirdn2d_load_filter(const Upfirdn2dParams& p, const A* f, A* s_filt, int tid) {
  const int taps = p.filt_w * p.filt_h;
  for (int i = tid; i < taps; i += p.threads) {
    const int a = i / p.filt_w, b = i % p.filt_w;
    s_filt[i] = p.flip ? f[i] : f[(p.filt_h - 1 - a) * p.filt_w + (p.filt_w - 1 - b)];
  }
}

// Thread `tid` copies its share of the tile's input window; samples outside x are the zeros of the padding.
template <typename T, typename A>
TK_HD void upfirdn2d_load_tile(const Upfirdn2dParams& p, const T* x, A* s_tile, int64_t plane, const TileOrigin& o,
                               int tid) {
  const T* xp = x + (plane / p.channels) * p.stride_n + (plane % p.channels) * p.stride_c;
  const int count = p.span_w * p.span_h;
  for (int i = tid; i < count; i += p.threads) {
    const int iy = o.iy0 + i / p.span_w, ix = o.ix0 + i % p.span_w;
    A v = A(0);
    if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
      v = static_cast<A>(xp[iy * p.stride_h + ix * p.stride_w]);
    }
    s_tile[i] = v;
  }
}

// Thread `tid` computes its share of the tile's outputs from the window (y is contiguous (N, C, out_h, out_w)).
template <typename T, typename A>
TK_HD void upfirdn2d_compute_tile(const Upfirdn2dParams& p, T* y, const A* s_tile, const A* s_filt, int64_t plane,
                                  const TileOrigin& o, int tid) {
  T* yp = y + plane * p.out_h * p.out_w;
  const A gain = static_cast<A>(p.gain);
  const int count = p.tile_w * p.tile_h;
  for (int i = tid; i < count; i += p.threads) {
    const int oy = o.oy0 + i / p.tile_w, ox = o.ox0 + i % p.tile_w;
    if (oy >= p.out_h || ox >= p.out_w) continue;
    const int my = oy * p.down_y - p.pad_y0;  // upsampled position under the filter's first row / column
    const int mx = ox * p.down_x - p.pad_x0;
    const int b0 = pos_mod(-mx, p.up_x);  // first tap that meets a sample of x
    A acc = A(0);
    for (int a = pos_mod(-my, p.up_y); a < p.filt_h; a += p.up_y) {
      const A* row = s_tile + ((my + a) / p.up_y - o.iy0) * p.span_w;  // exact division: my + a is a multiple
      const A* taps = s_filt + a * p.filt_w;
      for (int b = b0; b < p.filt_w; b += p.up_x) {
        acc += row[(mx + b) / p.up_x - o.ix0] * taps[b];
      }
    }
    yp[static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<T>(acc * gain);
  }
}

// Launches the CUDA kernel on `stream` (defined in upfirdn2d.cu for float, double, c10::Half, c10::BFloat16);
// f holds filt_h x filt_w taps in the arithmetic type of T.
template <typename T>
cudaError_t upfirdn2d_cuda_launch(const Upfirdn2dParams& p, const T* x, const typename AccType<T>::type* f, T* y,
                                  cudaStream_t stream);

}  // namespace translate_ops
