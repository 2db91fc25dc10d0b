// Fused CPU pass for an MLP layer's activation applied to a jet, and its backward.
//
// Layout (all arrays contiguous, channel first; M = N * width elements per channel):
//   y     (R, M)   the layer's pre-activations without the bias, R = 1 + d + P channels:
//                  row 0 the value, rows 1..d the gradient, rows 1+d..d+P the second-derivative
//                  channels (each the product of the previous layer's channel with the weight)
//   bias  (width)
//   base  (B, M)   the activation's transcendental part at z = y_0 + bias: tanh: [tanh z] and
//                  silu: [sigmoid z], written by the forward (computed here, vectorised, to
//                  within a few ulp of libm) and read by the backward; sin: [sin z, cos z],
//                  computed by torch and read by both
//   terms (T, 3)   (p, a, b): the quadratic q_p = sum over p's terms of y_{1+a} y_{1+b}, the
//                  chain rule's dz^T Q_p dz (laplacian: (0, a, a) for every a; diag: (a, a, a);
//                  full: (p, a, b) for a <= b), sorted by p
//   out   (R, M)   the activation's jet, the next layer's input:
//                  out_0 = s0, out_{1+a} = s1 y_{1+a}, out_{1+d+p} = s2 q_p + s1 y_{1+d+p}
// with s_r the activation's r-th derivative at z. The backward, given gout (R, M), writes
//   gy_{1+d+p} = s1 gout_{1+d+p}
//   gy_{1+a}   = s1 gout_{1+a} + s2 sum_p gout_{1+d+p} dq_p/dy_{1+a}
//   gy_0       = s1 gout_0 + s2 sum_a gout_{1+a} y_{1+a} + sum_p gout_{1+d+p} (s3 q_p + s2 y_{1+d+p})
// (gy_0 is also the bias's gradient per element; torch sums it over points).
//
// Elements are split into blocks of BLOCK across OpenMP threads; within a block the derivatives
// s_r are formed once into local arrays and every channel is then one contiguous, vectorisable
// loop. One pass reads each input channel once and writes each output once, where the same jet
// in torch ops is a dozen passes, each allocating a full-size temporary. Plain C entry points for
// ctypes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>

#include "fastmath.h"

namespace {

using kanpde_math::expm1_;
using kanpde_math::sigmoid_;
using kanpde_math::tanh_;

constexpr int64_t BLOCK = 256;
enum Activation { TANH = 0, SILU = 1, SIN = 2 };

struct Shape {
  int64_t m, width;  // elements per channel (N * width), width
  int64_t d, p;      // gradient and second-derivative channels
  int act;           // Activation
  int64_t n_terms;
};

inline Shape shape(const int64_t* dims) {
  return {dims[0], dims[1], dims[2], dims[3], int(dims[4]), dims[5]};
}

// d[r][i] = sigma^(r)(z_i), r = 0..3, for the `n` elements of the block starting at e, from the
// base rows; `written` (the forward's base, nullptr in the backward) first receives tanh z or
// sigmoid z (see the layout above).
template <typename T>
inline void derivatives(const Shape& s, const T* y, const T* bias, const T* base, T* written, int64_t e,
                        int64_t n, T (*d)[BLOCK]) {
  const bool forward = written != nullptr;
  T z[BLOCK];
  if (s.act != SIN && (forward || s.act == SILU)) {
    for (int64_t i = 0, j = e % s.width; i < n; ++i, j = j + 1 == s.width ? 0 : j + 1) z[i] = bias[j];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) z[i] += y[e + i];
  }
  if (s.act == TANH) {
    const T* t = base + e;
    if (forward) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) written[e + i] = T(tanh_(double(z[i])));
    }
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T s1 = T(1) - t[i] * t[i];
      d[0][i] = t[i], d[1][i] = s1, d[2][i] = T(-2) * t[i] * s1;
      d[3][i] = T(-2) * s1 * (s1 - T(2) * t[i] * t[i]);
    }
  } else if (s.act == SILU) {  // silu = z g, g = sigmoid z: s_r = r g^(r-1) + z g^(r)
    const T* g = base + e;
    if (forward) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) written[e + i] = T(sigmoid_(double(z[i])));
    }
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T g1 = g[i] * (T(1) - g[i]), c = T(1) - T(2) * g[i];
      T g2 = g1 * c, g3 = g1 * (c * c - T(2) * g1);
      d[0][i] = z[i] * g[i], d[1][i] = g[i] + z[i] * g1;
      d[2][i] = T(2) * g1 + z[i] * g2, d[3][i] = T(3) * g2 + z[i] * g3;
    }
  } else {  // sin
    const T *sn = base + e, *cs = base + s.m + e;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[0][i] = sn[i], d[1][i] = cs[i], d[2][i] = -sn[i], d[3][i] = -cs[i];
  }
}

// q[i] = q_p at the block's elements, from the terms [first, last) of channel p.
template <typename T>
inline void quadratic(const T* y, int64_t m, const int64_t* terms, int64_t first, int64_t last, int64_t e,
                      int64_t n, T* q) {
  std::fill(q, q + n, T(0));
  for (int64_t t = first; t < last; ++t) {
    const T *ya = y + (1 + terms[3 * t + 1]) * m + e, *yb = y + (1 + terms[3 * t + 2]) * m + e;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) q[i] += ya[i] * yb[i];
  }
}

// ranges[p], ranges[p + 1]: the terms of channel p (terms are sorted by p).
inline void term_ranges(const Shape& s, const int64_t* terms, int64_t* ranges) {
  int64_t t = 0;
  for (int64_t p = 0; p <= s.p; ++p) {
    while (t < s.n_terms && terms[3 * t] < p) ++t;
    ranges[p] = t;
  }
}

template <typename T>
void forward(const int64_t* dims, const T* y, const T* bias, T* base, const int64_t* terms, T* out,
             int threads) {
  const Shape s = shape(dims);
  const int64_t m = s.m;
  std::vector<int64_t> ranges(s.p + 1);
  term_ranges(s, terms, ranges.data());
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t e = 0; e < m; e += BLOCK) {
    const int64_t n = std::min(BLOCK, m - e);
    T d[4][BLOCK], q[BLOCK];
    derivatives(s, y, bias, base, s.act == SIN ? nullptr : base, e, n, d);
    std::copy(d[0], d[0] + n, out + e);
    for (int64_t a = 1; a <= s.d; ++a) {
      const T* ya = y + a * m + e;
      T* oa = out + a * m + e;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) oa[i] = d[1][i] * ya[i];
    }
    for (int64_t p = 0; p < s.p; ++p) {
      quadratic(y, m, terms, ranges[p], ranges[p + 1], e, n, q);
      const T* yp = y + (1 + s.d + p) * m + e;
      T* op = out + (1 + s.d + p) * m + e;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) op[i] = d[2][i] * q[i] + d[1][i] * yp[i];
    }
  }
}

template <typename T>
void backward(const int64_t* dims, const T* y, const T* bias, const T* base, const int64_t* terms,
              const T* gout, T* gy, int threads) {
  const Shape s = shape(dims);
  const int64_t m = s.m;
  std::vector<int64_t> ranges(s.p + 1);
  term_ranges(s, terms, ranges.data());
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t e = 0; e < m; e += BLOCK) {
    const int64_t n = std::min(BLOCK, m - e);
    T d[4][BLOCK], q[BLOCK], g0[BLOCK];
    derivatives<T>(s, y, bias, base, nullptr, e, n, d);
    const T* go0 = gout + e;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) g0[i] = d[1][i] * go0[i];
    for (int64_t a = 1; a <= s.d; ++a) {
      const T *ya = y + a * m + e, *ga = gout + a * m + e;
      T* gya = gy + a * m + e;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) gya[i] = d[1][i] * ga[i], g0[i] += d[2][i] * ga[i] * ya[i];
    }
    for (int64_t p = 0; p < s.p; ++p) {
      const int64_t c = (1 + s.d + p) * m + e;
      quadratic(y, m, terms, ranges[p], ranges[p + 1], e, n, q);
      const T *yp = y + c, *gp = gout + c;
      T* gyp = gy + c;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) gyp[i] = d[1][i] * gp[i], g0[i] += gp[i] * (d[3][i] * q[i] + d[2][i] * yp[i]);
      for (int64_t t = ranges[p]; t < ranges[p + 1]; ++t) {  // d q_p / d y_a = y_b, and the other way
        const int64_t a = 1 + terms[3 * t + 1], b = 1 + terms[3 * t + 2];
        const T *ya = y + a * m + e, *yb = y + b * m + e;
        T *gya = gy + a * m + e, *gyb = gy + b * m + e;
        if (a == b) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) gya[i] += T(2) * d[2][i] * gp[i] * ya[i];
        } else {  // distinct rows
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) {
            const T r = d[2][i] * gp[i];
            gya[i] += r * yb[i], gyb[i] += r * ya[i];
          }
        }
      }
    }
    std::copy(g0, g0 + n, gy + e);
  }
}

}  // namespace

#define KANPDE_MLP_ENTRY_POINTS(T, SUFFIX)                                                              \
  extern "C" void mlp_act_forward_##SUFFIX(const int64_t* dims, const T* y, const T* bias, T* base,     \
                                           const int64_t* terms, T* out, int threads) {                \
    forward<T>(dims, y, bias, base, terms, out, threads);                                              \
  }                                                                                                    \
  extern "C" void mlp_act_backward_##SUFFIX(const int64_t* dims, const T* y, const T* bias,            \
                                            const T* base, const int64_t* terms, const T* gout, T* gy, \
                                            int threads) {                                             \
    backward<T>(dims, y, bias, base, terms, gout, gy, threads);                                        \
  }

KANPDE_MLP_ENTRY_POINTS(double, f64)
KANPDE_MLP_ENTRY_POINTS(float, f32)
