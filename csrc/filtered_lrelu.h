// filtered_lrelu: StyleGAN3's alias-free nonlinearity, fused. Per (n, c) plane, with z = x + b,
//   u = upfirdn2d(z, fu, up, padding, gain = up_x * up_y)         (upsample by zero insertion, pad/crop, filter)
//   a = clamp(gain * lrelu(u, slope), -clamp, clamp)                (clamp < 0: none)
//   y = upfirdn2d(a, fd, down)                                      (filter, keep every down-th sample; no padding)
// with upfirdn2d's conventions (upfirdn2d.h): a filter is reversed (a convolution) unless flip is set, and a 1-D
// filter is separable (applied along x, then along y). Along one axis, u has
//   mid_len = in * up + pad0 + pad1 - fu + 1 samples and y has out = (mid_len - fd) / down + 1.
//
// The kernel tiles the output: a block computes tile_h x tile_w outputs of one plane. The outputs
// [o0, o0 + tile) read u at [o0 * down, o0 * down + mid) with mid = (tile - 1) * down + fd, which in turn reads
// `span` input samples from ix0 on (upfirdn2d_span). Each stage reads and writes shared memory only:
//   1. load:      s_x  = x + b over the span_h x span_w window (zeros outside x: the padding);
//   2. up:        s_t  = the x pass of fu over s_x (span_h x mid_w; separable fu only), then
//                 s_mid = the y pass over s_t (or the 2-D fu over s_x), times up_x * up_y, through lrelu and clamp;
//   3. down:      s_v  = the x pass of fd over s_mid (mid_h x tile_w; separable fd only), then
//                 y    = the y pass over s_v (or the 2-D fd over s_mid), written to global memory.
// So the upsampled tensor u never reaches global memory. Every stage is `fir_at`: one output of a filter pass with
// its own up, down, padding and window origin per axis, so a separable pass is the same code with a 1-tap axis.
#pragma once

#include <cuda_runtime_api.h>

#include "common.h"
#include "upfirdn2d.h"

namespace translate_ops {

struct FilteredLreluParams {
  int64_t planes;    // N * C
  int64_t channels;  // C: the bias of plane p is b[p % C]
  int64_t stride_n, stride_c, stride_h, stride_w;  // of x, in elements (any layout)
  int in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // leading padding of the upsampled image; the trailing padding only enters out_w / out_h
  int fu_w, fu_h, fd_w, fd_h;
  bool fu_separable, fd_separable;  // 1-D filters: fu_w == fu_h taps, applied along x then along y
  bool flip;
  double gain, slope, clamp;  // clamp < 0: none
  int tile_w, tile_h;  // outputs per block
  int mid_w, mid_h;    // upsampled samples a tile reads
  int span_w, span_h;  // input samples a tile reads
  int tiles_x, tiles_y;
  int threads;
};

// One axis of a filter pass over a window held in shared memory: output o reads the zero-inserted, padded source
// at o * down - pad0 + k for taps k < filt, where source sample i sits at position i * up and is stored at
// window index i - src0.
struct FirAxis {
  int up, down, pad0, filt, src0;
};

// An axis that a separable pass leaves alone: output o is source sample o.
TK_HD FirAxis fir_identity(int src0) { return FirAxis{1, 1, 0, 1, src0}; }

// Output (ox, oy) of a filter pass: the sum over the taps that meet a source sample (as upfirdn2d_compute_tile),
// taps[a * ax.filt + b] multiplying the source at row offset a, column offset b; src is src_w samples wide.
template <typename A>
TK_HD A fir_at(const A* src, int src_w, const A* taps, const FirAxis& ax, const FirAxis& ay, int ox, int oy) {
  const int mx = ox * ax.down - ax.pad0, my = oy * ay.down - ay.pad0;
  const int b0 = pos_mod(-mx, ax.up);
  A acc = A(0);
  for (int a = pos_mod(-my, ay.up); a < ay.filt; a += ay.up) {
    const A* row = src + ((my + a) / ay.up - ay.src0) * src_w;  // exact division: my + a is a multiple of up
    const A* t = taps + a * ax.filt;
    for (int b = b0; b < ax.filt; b += ax.up) acc += row[(mx + b) / ax.up - ax.src0] * t[b];
  }
  return acc;
}

// Taps each filter keeps in shared memory (a separable filter: its 1-D taps, used by both passes).
TK_HD int filtered_lrelu_taps(int w, int h, bool separable) { return separable ? w : w * h; }

// The sizes of the shared buffers, in elements of the arithmetic type, in the order they are laid out:
// [fu taps][fd taps][s_x, then s_t | s_v (s_v reuses them once s_mid is done)][s_mid].
struct FilteredLreluShared {
  int64_t fu, fd, front, x, mid;
  TK_HD int64_t total() const { return fu + fd + front + mid; }
};

TK_HD FilteredLreluShared filtered_lrelu_shared(const FilteredLreluParams& p) {
  FilteredLreluShared s;
  s.fu = filtered_lrelu_taps(p.fu_w, p.fu_h, p.fu_separable);
  s.fd = filtered_lrelu_taps(p.fd_w, p.fd_h, p.fd_separable);
  s.x = static_cast<int64_t>(p.span_w) * p.span_h;
  const int64_t t = p.fu_separable ? static_cast<int64_t>(p.span_h) * p.mid_w : 0;
  const int64_t v = p.fd_separable ? static_cast<int64_t>(p.mid_h) * p.tile_w : 0;
  s.front = s.x + t > v ? s.x + t : v;
  s.mid = static_cast<int64_t>(p.mid_w) * p.mid_h;
  return s;
}

template <typename A>
inline int64_t filtered_lrelu_shared_bytes(const FilteredLreluParams& p) {
  return static_cast<int64_t>(sizeof(A)) * filtered_lrelu_shared(p).total();
}

// Picks the tile (at most 32 x 32 outputs, no larger than the output) and shrinks it until the buffers fit in
// shared memory. Returns false when even a single output does not fit (filters or factors that are too large).
template <typename A>
inline bool filtered_lrelu_plan(FilteredLreluParams& p) {
  p.threads = kThreads;
  p.tile_w = round_up_pow2(p.out_w, 32);
  p.tile_h = round_up_pow2(p.out_h, 32);
  for (;;) {
    p.mid_w = (p.tile_w - 1) * p.down_x + p.fd_w;
    p.mid_h = (p.tile_h - 1) * p.down_y + p.fd_h;
    p.span_w = upfirdn2d_span(p.mid_w, p.up_x, 1, p.fu_w);
    p.span_h = upfirdn2d_span(p.mid_h, p.up_y, 1, p.fu_h);
    if (filtered_lrelu_shared_bytes<A>(p) <= kMaxSharedBytes) break;
    if (p.tile_w == 1 && p.tile_h == 1) return false;
    if (p.tile_h > 1 && (p.tile_h >= p.tile_w || p.tile_w == 1)) {
      p.tile_h = (p.tile_h + 1) / 2;
    } else {
      p.tile_w = (p.tile_w + 1) / 2;
    }
  }
  p.tiles_x = (p.out_w + p.tile_w - 1) / p.tile_w;
  p.tiles_y = (p.out_h + p.tile_h - 1) / p.tile_h;
  return true;
}

// Where a tile starts: its first output (ox0, oy0), its first upsampled sample (mx0, my0) and the first input
// sample of its window (ix0, iy0), the first whose upsampled position ix * up - pad0 is at or after mx0.
struct FilteredLreluTile {
  int ox0, oy0, mx0, my0, ix0, iy0;
};

TK_HD FilteredLreluTile filtered_lrelu_tile(const FilteredLreluParams& p, int tile) {
  FilteredLreluTile o;
  o.ox0 = (tile % p.tiles_x) * p.tile_w;
  o.oy0 = (tile / p.tiles_x) * p.tile_h;
  o.mx0 = o.ox0 * p.down_x;
  o.my0 = o.oy0 * p.down_y;
  o.ix0 = ceil_div(o.mx0 - p.pad_x0, p.up_x);
  o.iy0 = ceil_div(o.my0 - p.pad_y0, p.up_y);
  return o;
}

// Thread `tid` stores its share of a filter's taps in the order fir_at visits them (reversed unless flip).
template <typename A>
TK_HD void filtered_lrelu_load_filter(int w, int h, bool separable, bool flip, const A* f, A* s_f, int tid,
                                      int threads) {
  const int taps = filtered_lrelu_taps(w, h, separable);
  for (int i = tid; i < taps; i += threads) s_f[i] = flip ? f[i] : f[taps - 1 - i];
}

// A window of a plane: w x h samples from (x0, y0) on, stored row after row.
struct Window {
  int x0, y0, w, h;
};

// Stage 1: thread `tid` copies its share of the input window `win` plus the plane's bias; outside x, zeros.
template <typename T, typename A>
TK_HD void filtered_lrelu_load_input(const FilteredLreluParams& p, const T* x, const T* b, A* s_x,
                                     int64_t plane, const Window& win, int tid) {
  const T* xp = x + (plane / p.channels) * p.stride_n + (plane % p.channels) * p.stride_c;
  const A bias = b != nullptr ? static_cast<A>(b[plane % p.channels]) : A(0);
  const int count = win.w * win.h;
  for (int i = tid; i < count; i += p.threads) {
    const int iy = win.y0 + i / win.w, ix = win.x0 + i % win.w;
    A v = A(0);
    if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
      v = static_cast<A>(xp[iy * p.stride_h + ix * p.stride_w]) + bias;
    }
    s_x[i] = v;
  }
}

// The x pass of a separable filter (or any pass whose outputs stay in shared memory): thread `tid` computes its
// share of dst[r][c] = fir_at(output (out.x0 + c, out.y0 + r)).
template <typename A>
TK_HD void fir_pass(const A* src, int src_w, const A* taps, const FirAxis& ax, const FirAxis& ay, A* dst,
                    const Window& out, int tid, int threads) {
  const int count = out.w * out.h;
  for (int i = tid; i < count; i += threads) {
    dst[i] = fir_at(src, src_w, taps, ax, ay, out.x0 + i % out.w, out.y0 + i / out.w);
  }
}

// Stage 2a (separable fu only): the x pass, s_t[r][c] for the window's rows r and the tile's upsampled columns c.
template <typename A>
TK_HD void filtered_lrelu_up_x(const FilteredLreluParams& p, const A* s_x, const A* s_fu, A* s_t,
                               const FilteredLreluTile& o, int tid) {
  fir_pass(s_x, p.span_w, s_fu, FirAxis{p.up_x, 1, p.pad_x0, p.fu_w, o.ix0}, fir_identity(o.iy0), s_t,
           Window{o.mx0, o.iy0, p.mid_w, p.span_h}, tid, p.threads);
}

// The activation of one upsampled sample: lrelu with slope, times gain, clamped.
template <typename A>
TK_HD A filtered_lrelu_act(const FilteredLreluParams& p, A u) {
  A v = (u > A(0) ? u : u * static_cast<A>(p.slope)) * static_cast<A>(p.gain);
  const A clamp = static_cast<A>(p.clamp);
  if (clamp >= A(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
  return v;
}

// Stage 2b: the upsampled, activated tile s_mid (mid_h x mid_w): the y pass over s_t (separable fu) or the 2-D fu
// over s_x.
template <typename A>
TK_HD void filtered_lrelu_up(const FilteredLreluParams& p, const A* s_x, const A* s_t, const A* s_fu, A* s_mid,
                             const FilteredLreluTile& o, int tid) {
  const A up_gain = static_cast<A>(p.up_x * p.up_y);  // the inserted zeros: a normalised filter keeps the mean
  const FirAxis ay{p.up_y, 1, p.pad_y0, p.fu_h, o.iy0};
  const int count = p.mid_w * p.mid_h;
  for (int i = tid; i < count; i += p.threads) {
    const int r = i / p.mid_w, c = i % p.mid_w;
    A u;
    if (p.fu_separable) {
      u = fir_at(s_t, p.mid_w, s_fu, fir_identity(o.mx0), ay, o.mx0 + c, o.my0 + r);
    } else {
      u = fir_at(s_x, p.span_w, s_fu, FirAxis{p.up_x, 1, p.pad_x0, p.fu_w, o.ix0}, ay, o.mx0 + c, o.my0 + r);
    }
    s_mid[i] = filtered_lrelu_act(p, u * up_gain);
  }
}

// Stage 3a (separable fd only): the x pass, s_v[r][c] for the tile's upsampled rows r and output columns c.
template <typename A>
TK_HD void filtered_lrelu_down_x(const FilteredLreluParams& p, const A* s_mid, const A* s_fd, A* s_v,
                                 const FilteredLreluTile& o, int tid) {
  fir_pass(s_mid, p.mid_w, s_fd, FirAxis{1, p.down_x, 0, p.fd_w, o.mx0}, fir_identity(o.my0), s_v,
           Window{o.ox0, o.my0, p.tile_w, p.mid_h}, tid, p.threads);
}

// Stage 3b: the tile's outputs, the y pass over s_v (separable fd) or the 2-D fd over s_mid; y is contiguous
// (N, C, out_h, out_w).
template <typename T, typename A>
TK_HD void filtered_lrelu_down(const FilteredLreluParams& p, const A* s_mid, const A* s_v, const A* s_fd, T* y,
                               int64_t plane, const FilteredLreluTile& o, int tid) {
  T* yp = y + plane * p.out_h * p.out_w;
  const FirAxis ay{1, p.down_y, 0, p.fd_h, o.my0};
  const int count = p.tile_w * p.tile_h;
  for (int i = tid; i < count; i += p.threads) {
    const int oy = o.oy0 + i / p.tile_w, ox = o.ox0 + i % p.tile_w;
    if (oy >= p.out_h || ox >= p.out_w) continue;
    A v;
    if (p.fd_separable) {
      v = fir_at(s_v, p.tile_w, s_fd, fir_identity(o.ox0), ay, ox, oy);
    } else {
      v = fir_at(s_mid, p.mid_w, s_fd, FirAxis{1, p.down_x, 0, p.fd_w, o.mx0}, ay, ox, oy);
    }
    yp[static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<T>(v);
  }
}

// ------------------------------------------------------------------------------------------------- the gradient
//
// dx = U^T (gain * lrelu'(u) * [|a| <= clamp] * D^T dy) and db = the sum of dx over (n, h, w), where U^T and D^T
// are the adjoints of the up and down passes: a filter pass with up and down swapped and the taps reversed. The
// gradient kernel tiles dx: the inputs [i0, i0 + tile) gather du at the upsampled positions
// [i0 * up + pad0 - fu + 1, ...) of length mid = (tile - 1) * up + fu; the block recomputes u there from a window of
// x + b (as the forward does, but keeping the activation's derivative), computes D^T dy there from a window of dy,
// multiplies them, and applies U^T, again in shared memory only. Since lrelu and clamp are piecewise linear, this
// gradient is linear in dy and locally constant in x and b: its own derivative is a forward-like pass of dy's
// cotangent (priors/ops/_backend.py).
struct FilteredLreluGradPlan {
  int tile_w, tile_h;      // dx samples per block
  int mid_w, mid_h;        // upsampled samples of du a tile gathers
  int span_w, span_h;      // x samples that give u there
  int dspan_w, dspan_h;    // dy samples that give D^T dy there
  int tiles_x, tiles_y;
};

// The shared buffers of the gradient kernel, in elements, laid out as
// [fu taps][fu taps reversed][fd taps reversed][front][s_du], where the front holds s_x (+ s_t) while u is built,
// then s_dy (+ s_w, the x pass of D^T), then s_v (the x pass of U^T).
struct FilteredLreluGradShared {
  int64_t fu, fd, front, x, dy, mid;
  TK_HD int64_t total() const { return 2 * fu + fd + front + mid; }
};

TK_HD FilteredLreluGradShared filtered_lrelu_grad_shared(const FilteredLreluParams& p,
                                                        const FilteredLreluGradPlan& g) {
  FilteredLreluGradShared s;
  s.fu = filtered_lrelu_taps(p.fu_w, p.fu_h, p.fu_separable);
  s.fd = filtered_lrelu_taps(p.fd_w, p.fd_h, p.fd_separable);
  s.x = static_cast<int64_t>(g.span_w) * g.span_h;
  s.dy = static_cast<int64_t>(g.dspan_w) * g.dspan_h;
  const int64_t up = s.x + (p.fu_separable ? static_cast<int64_t>(g.span_h) * g.mid_w : 0);
  const int64_t down = s.dy + (p.fd_separable ? static_cast<int64_t>(g.dspan_h) * g.mid_w : 0);
  const int64_t back = p.fu_separable ? static_cast<int64_t>(g.mid_h) * g.tile_w : 0;
  s.front = up > down ? up : down;
  s.front = s.front > back ? s.front : back;
  s.mid = static_cast<int64_t>(g.mid_w) * g.mid_h;
  return s;
}

template <typename A>
inline int64_t filtered_lrelu_grad_shared_bytes(const FilteredLreluParams& p, const FilteredLreluGradPlan& g) {
  return static_cast<int64_t>(sizeof(A)) * filtered_lrelu_grad_shared(p, g).total();
}

// As filtered_lrelu_plan, over dx (in_h x in_w).
template <typename A>
inline bool filtered_lrelu_grad_plan(const FilteredLreluParams& p, FilteredLreluGradPlan& g) {
  g.tile_w = round_up_pow2(p.in_w, 32);
  g.tile_h = round_up_pow2(p.in_h, 32);
  for (;;) {
    g.mid_w = (g.tile_w - 1) * p.up_x + p.fu_w;
    g.mid_h = (g.tile_h - 1) * p.up_y + p.fu_h;
    g.span_w = upfirdn2d_span(g.mid_w, p.up_x, 1, p.fu_w);
    g.span_h = upfirdn2d_span(g.mid_h, p.up_y, 1, p.fu_h);
    g.dspan_w = upfirdn2d_span(g.mid_w, p.down_x, 1, p.fd_w);
    g.dspan_h = upfirdn2d_span(g.mid_h, p.down_y, 1, p.fd_h);
    if (filtered_lrelu_grad_shared_bytes<A>(p, g) <= kMaxSharedBytes) break;
    if (g.tile_w == 1 && g.tile_h == 1) return false;
    if (g.tile_h > 1 && (g.tile_h >= g.tile_w || g.tile_w == 1)) {
      g.tile_h = (g.tile_h + 1) / 2;
    } else {
      g.tile_w = (g.tile_w + 1) / 2;
    }
  }
  g.tiles_x = (p.in_w + g.tile_w - 1) / g.tile_w;
  g.tiles_y = (p.in_h + g.tile_h - 1) / g.tile_h;
  return true;
}

// Where a gradient tile starts: its first dx sample (ix0, iy0), the first upsampled position it gathers (mx0, my0),
// and the first samples of its windows of x (zx0, zy0) and of dy (qx0, qy0).
struct FilteredLreluGradTile {
  int ix0, iy0, mx0, my0, zx0, zy0, qx0, qy0;
};

TK_HD FilteredLreluGradTile filtered_lrelu_grad_tile(const FilteredLreluParams& p, const FilteredLreluGradPlan& g,
                                                     int tile) {
  FilteredLreluGradTile o;
  o.ix0 = (tile % g.tiles_x) * g.tile_w;
  o.iy0 = (tile / g.tiles_x) * g.tile_h;
  o.mx0 = o.ix0 * p.up_x + p.pad_x0 - (p.fu_w - 1);
  o.my0 = o.iy0 * p.up_y + p.pad_y0 - (p.fu_h - 1);
  o.zx0 = ceil_div(o.mx0 - p.pad_x0, p.up_x);
  o.zy0 = ceil_div(o.my0 - p.pad_y0, p.up_y);
  o.qx0 = ceil_div(o.mx0 - (p.fd_w - 1), p.down_x);
  o.qy0 = ceil_div(o.my0 - (p.fd_h - 1), p.down_y);
  return o;
}

// Thread `tid` copies its share of the dy window; outside dy (contiguous (N, C, out_h, out_w)), zeros.
template <typename T, typename A>
TK_HD void filtered_lrelu_load_dy(const FilteredLreluParams& p, const T* dy, A* s_dy, int64_t plane,
                                  const Window& win, int tid) {
  const T* dp = dy + plane * p.out_h * p.out_w;
  const int count = win.w * win.h;
  for (int i = tid; i < count; i += p.threads) {
    const int qy = win.y0 + i / win.w, qx = win.x0 + i % win.w;
    s_dy[i] = (qy >= 0 && qy < p.out_h && qx >= 0 && qx < p.out_w) ? static_cast<A>(dp[qy * p.out_w + qx]) : A(0);
  }
}

// The derivative of the activation at one upsampled sample (0 where the clamp is flat; its edges pass, as
// torch.clamp's gradient does; lrelu'(0) = slope, as bias_act's).
template <typename A>
TK_HD A filtered_lrelu_act_grad(const FilteredLreluParams& p, A u) {
  const A d = (u > A(0) ? A(1) : static_cast<A>(p.slope)) * static_cast<A>(p.gain);
  const A clamp = static_cast<A>(p.clamp);
  if (clamp >= A(0)) {
    const A v = u * d;
    if (v > clamp || v < -clamp) return A(0);
  }
  return d;
}

// The x pass of fu over the x window (separable fu only): s_t (span_h x mid_w).
template <typename A>
TK_HD void filtered_lrelu_grad_up_x(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_x,
                                    const A* s_fu, A* s_t, const FilteredLreluGradTile& o, int tid) {
  fir_pass(s_x, g.span_w, s_fu, FirAxis{p.up_x, 1, p.pad_x0, p.fu_w, o.zx0}, fir_identity(o.zy0), s_t,
           Window{o.mx0, o.zy0, g.mid_w, g.span_h}, tid, p.threads);
}

// Gradient stage 1 (after s_x and, for a separable fu, its x pass s_t): s_du = the activation's derivative at u.
template <typename A>
TK_HD void filtered_lrelu_grad_up(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_x,
                                  const A* s_t, const A* s_fu, A* s_du, const FilteredLreluGradTile& o, int tid) {
  const A up_gain = static_cast<A>(p.up_x * p.up_y);
  const FirAxis ay{p.up_y, 1, p.pad_y0, p.fu_h, o.zy0};
  const int count = g.mid_w * g.mid_h;
  for (int i = tid; i < count; i += p.threads) {
    const int r = i / g.mid_w, c = i % g.mid_w;
    A u;
    if (p.fu_separable) {
      u = fir_at(s_t, g.mid_w, s_fu, fir_identity(o.mx0), ay, o.mx0 + c, o.my0 + r);
    } else {
      u = fir_at(s_x, g.span_w, s_fu, FirAxis{p.up_x, 1, p.pad_x0, p.fu_w, o.zx0}, ay, o.mx0 + c, o.my0 + r);
    }
    s_du[i] = filtered_lrelu_act_grad(p, u * up_gain);
  }
}

// Gradient stage 2 (after s_dy and, for a separable fd, its x pass s_w): s_du *= D^T dy, the down pass's adjoint
// (dy upsampled by down, filtered with the reversed taps s_fd_adj).
template <typename A>
TK_HD void filtered_lrelu_grad_down(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_dy,
                                    const A* s_w, const A* s_fd_adj, A* s_du, const FilteredLreluGradTile& o,
                                    int tid) {
  const FirAxis ay{p.down_y, 1, p.fd_h - 1, p.fd_h, o.qy0};
  const int count = g.mid_w * g.mid_h;
  for (int i = tid; i < count; i += p.threads) {
    const int r = i / g.mid_w, c = i % g.mid_w;
    A da;
    if (p.fd_separable) {
      da = fir_at(s_w, g.mid_w, s_fd_adj, fir_identity(o.mx0), ay, o.mx0 + c, o.my0 + r);
    } else {
      da = fir_at(s_dy, g.dspan_w, s_fd_adj, FirAxis{p.down_x, 1, p.fd_w - 1, p.fd_w, o.qx0}, ay, o.mx0 + c,
                  o.my0 + r);
    }
    s_du[i] *= da;
  }
}

// The x passes of the two adjoints (separable filters only): D^T's over the dy window (dspan_h x mid_w), U^T's over
// du (mid_h x tile_w).
template <typename A>
TK_HD void filtered_lrelu_grad_down_x(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_dy,
                                      const A* s_fd_adj, A* s_w, const FilteredLreluGradTile& o, int tid) {
  fir_pass(s_dy, g.dspan_w, s_fd_adj, FirAxis{p.down_x, 1, p.fd_w - 1, p.fd_w, o.qx0}, fir_identity(o.qy0), s_w,
           Window{o.mx0, o.qy0, g.mid_w, g.dspan_h}, tid, p.threads);
}

template <typename A>
TK_HD void filtered_lrelu_grad_dx_x(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_du,
                                    const A* s_fu_adj, A* s_v, const FilteredLreluGradTile& o, int tid) {
  fir_pass(s_du, g.mid_w, s_fu_adj, FirAxis{1, p.up_x, 0, p.fu_w, o.ix0 * p.up_x}, fir_identity(o.my0),
           s_v, Window{o.ix0, o.my0, g.tile_w, g.mid_h}, tid, p.threads);
}

// Gradient stage 3: the tile's dx = U^T du (du decimated by up, filtered with the reversed taps s_fu_adj, times
// up_x * up_y), written to dx (contiguous (N, C, in_h, in_w)).
template <typename T, typename A>
TK_HD void filtered_lrelu_grad_dx(const FilteredLreluParams& p, const FilteredLreluGradPlan& g, const A* s_du,
                                  const A* s_v, const A* s_fu_adj, T* dx, int64_t plane,
                                  const FilteredLreluGradTile& o, int tid) {
  T* dp = dx + plane * p.in_h * p.in_w;
  const A up_gain = static_cast<A>(p.up_x * p.up_y);
  // dx[i] reads du at the upsampled position i * up + pad0 - (fu - 1) + k, stored at (i - ix0) * up + k: in the
  // pass's own coordinates (position i * up + k), the window starts at ix0 * up.
  const FirAxis ay{1, p.up_y, 0, p.fu_h, o.iy0 * p.up_y};
  const int count = g.tile_w * g.tile_h;
  for (int i = tid; i < count; i += p.threads) {
    const int iy = o.iy0 + i / g.tile_w, ix = o.ix0 + i % g.tile_w;
    if (iy >= p.in_h || ix >= p.in_w) continue;
    A v;
    if (p.fu_separable) {
      v = fir_at(s_v, g.tile_w, s_fu_adj, fir_identity(o.ix0), ay, ix, iy);
    } else {
      v = fir_at(s_du, g.mid_w, s_fu_adj, FirAxis{1, p.up_x, 0, p.fu_w, o.ix0 * p.up_x}, ay, ix, iy);
    }
    dp[static_cast<int64_t>(iy) * p.in_w + ix] = static_cast<T>(v * up_gain);
  }
}

// Launches the CUDA kernel on `stream` (defined in filtered_lrelu.cu for float, double, c10::Half,
// c10::BFloat16); fu and fd hold their taps in the arithmetic type of T, b is null or has C entries.
template <typename T>
cudaError_t filtered_lrelu_cuda_launch(const FilteredLreluParams& p, const T* x, const T* b,
                                       const typename AccType<T>::type* fu, const typename AccType<T>::type* fd,
                                       T* y, cudaStream_t stream);

// Launches the gradient kernel: dx from dy (contiguous, the output's shape), x, b and the filters.
template <typename T>
cudaError_t filtered_lrelu_grad_cuda_launch(const FilteredLreluParams& p, const FilteredLreluGradPlan& g,
                                            const T* dy, const T* x, const T* b,
                                            const typename AccType<T>::type* fu,
                                            const typename AccType<T>::type* fd, T* dx, cudaStream_t stream);

}  // namespace translate_ops
