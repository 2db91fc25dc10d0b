// Fused CPU kernel for one KAN layer on a uniform grid: the jet forward pass and its backward.
//
// Layout (all arrays contiguous, row-major):
//   x    (N, n_in)         layer inputs
//   dh   (N, n_in, d)      their input gradients
//   d2h  (N, n_in, P)      their second-derivative channels
//   m2   (N, n_in, P)      dh^T Q_p dh, the chain rule's quadratic term: given (mode 0) or
//                          computed here from dh (mode 1 "laplacian" |dh|^2, 2 "diag" dh_a^2,
//                          3 "full" dh_a dh_b for a <= b), so that no torch op forms it
//   coef (n_in, K, n_out)  spline coefficients, K = G + k
//   wb   (n_in, n_out)     base (silu) weights
//   t0, h (n_in)           first knot and knot spacing per input
//   val  (N, n_out), grad (N, n_out, d), sec (N, n_out, P)   outputs, laid out like the next
//                          layer's x, dh, d2h (no transpose or copy between layers)
//
// With phi_io the edge function of input i to output o and phi', phi'' its derivatives:
//   val[n, o]     = sum_i phi_io(x_i)
//   grad[n, o, a] = sum_i phi'_io(x_i) dh_ia
//   sec[n, o, p]  = sum_i phi'_io(x_i) d2h_ip + phi''_io(x_i) m2_ip
// Only the k + 1 bases of the cell holding x_i are non-zero, so each (n, i) touches k + 1 rows
// of coef. A point is in cell c = floor((x - t0) / h) when 0 <= c < n_cells; outside the knot
// span every basis is 0 (silu still counts), as in Cox-de Boor. Bases whose index falls outside
// [0, K) do not exist: they read a zero row and their gradients go to a discarded row.
//
// The loop over outputs o is the one marked for vectorisation (omp simd) (with one output and cubic
// splines, the loop over (point, input) pairs instead: forward_one, backward_one), and sigmoid(x) for a
// block of points is one vectorised loop before it (no libm call per pair: on one Intel Xeon a
// call into glibc's exp from this AVX-512 code cost 5x the whole forward, see fastmath.h); the
// flag set is still chosen by timing (kanpde/nn/tuning.py). The
// order k and the channel counts d, P are template parameters for the common cases (k = 3;
// d <= 3 with P = 0, 1, d or d (d + 1) / 2), so the loops over bases and channels unroll; other
// cases run the same code with runtime counts. Blocks of points are split across OpenMP threads; the
// backward accumulates coefficient and base-weight gradients in per-thread buffers, summed at
// the end. Plain C entry points for ctypes.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>

#include "fastmath.h"

namespace {

constexpr int MAX_ORDER = 7;
constexpr int MAX_D = 16;
constexpr int MAX_P = MAX_D * (MAX_D + 1) / 2;

struct Shape {
  int64_t n, n_in, n_out, K, n_cells;  // K: bases per input, n_cells: cells of the knot span
  int order, d, P, mode;               // mode: how m2 is had, see the layout above
};

// q[p] = m2 of one (point, input): read (mode 0) or formed from its gradient g.
template <typename T>
inline void quadratic(int mode, int d, int np, const T* g, const T* given, T* q) {
  if (mode == 0) {
    for (int p = 0; p < np; ++p) q[p] = given[p];
  } else if (mode == 1) {
    T s = T(0);
    for (int a = 0; a < d; ++a) s += g[a] * g[a];
    if (np) q[0] = s;
  } else if (mode == 2) {
    for (int a = 0; a < np; ++a) q[a] = g[a] * g[a];
  } else {
    int p = 0;
    for (int a = 0; a < d; ++a)
      for (int b = a; b < d && p < np; ++b) q[p++] = g[a] * g[b];
  }
}

// gg[a] += sum_p r[p] dq_p/dg_a: the gradient through a formed m2 (modes 1-3).
template <typename T>
inline void quadratic_backward(int mode, int d, int np, const T* g, const T* r, T* gg) {
  if (mode == 1) {
    for (int a = 0; a < d && np; ++a) gg[a] += T(2) * g[a] * r[0];
  } else if (mode == 2) {
    for (int a = 0; a < np; ++a) gg[a] += T(2) * g[a] * r[a];
  } else if (mode == 3) {
    int p = 0;
    for (int a = 0; a < d; ++a)
      for (int b = a; b < d && p < np; ++b, ++p) gg[a] += g[b] * r[p], gg[b] += g[a] * r[p];
  }
}

// Points are taken in blocks of BLOCK: sigmoid(x) for a block's (point, input) pairs is one
// vectorised loop (fastmath.h) before the loop over them, instead of a libm exp per pair.
constexpr int64_t BLOCK = 64;

// sg[j] = sigmoid(x[j]), j < n.
template <typename T>
inline void sigmoids(const T* x, int64_t n, T* sg) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) sg[j] = T(kanpde_math::sigmoid_(double(x[j])));
}

// silu^(r)(x), r = 0..3, given sg = sigmoid(x).
template <typename T>
inline void silu_derivs(T x, T sg, T* s) {
  T sp = sg * (T(1) - sg);  // sigmoid'
  T q = T(1) - T(2) * sg;
  s[0] = x * sg;
  s[1] = sg * (T(1) + x * (T(1) - sg));
  s[2] = sp * (T(2) + x * q);
  s[3] = sp * (q * (T(3) + x * q) - T(2) * x * sp);
}

// Local bases b[q][m] = d^q/dx^q B_{c-k+m}(x), q = 0..3, m = 0..k, at x = t_c + u h on uniform
// knots. Order k = ORDER when ORDER > 0 (compile time), else `order`.
// Cubic: closed form. Otherwise B^r_m = ((u + r - m) B^{r-1}_{m-1} + (m + 1 - u) B^{r-1}_m) / r
// and d/dx B^r_m = (B^{r-1}_{m-1} - B^{r-1}_m) / h, out-of-range B^{r-1} being 0.
template <typename T, int ORDER>
inline void local_bases(T u, T inv_h, int order, T b[4][MAX_ORDER + 1]) {
  const int k = ORDER > 0 ? ORDER : order;
  if (ORDER == 3) {
    const T v = T(1) - u, u2 = u * u, v2 = v * v, h2 = inv_h * inv_h, sixth = T(1.0 / 6.0);
    b[0][0] = v2 * v * sixth;
    b[0][1] = (T(3) * u2 * u - T(6) * u2 + T(4)) * sixth;
    b[0][2] = (T(-3) * u2 * u + T(3) * u2 + T(3) * u + T(1)) * sixth;
    b[0][3] = u2 * u * sixth;
    b[1][0] = -v2 / T(2) * inv_h;
    b[1][1] = (T(3) * u2 - T(4) * u) / T(2) * inv_h;
    b[1][2] = (T(-3) * u2 + T(2) * u + T(1)) / T(2) * inv_h;
    b[1][3] = u2 / T(2) * inv_h;
    b[2][0] = v * h2;
    b[2][1] = (T(3) * u - T(2)) * h2;
    b[2][2] = (T(1) - T(3) * u) * h2;
    b[2][3] = u * h2;
    const T h3 = h2 * inv_h;
    b[3][0] = -h3;
    b[3][1] = T(3) * h3;
    b[3][2] = T(-3) * h3;
    b[3][3] = h3;
    return;
  }
  T lev[MAX_ORDER + 1][MAX_ORDER + 1];  // lev[r][m], m = 0..r
  lev[0][0] = T(1);
  for (int r = 1; r <= k; ++r) {
    const T inv_r = T(1) / T(r);
    for (int m = 0; m <= r; ++m) {
      T left = m >= 1 ? (u + T(r - m)) * lev[r - 1][m - 1] : T(0);
      T right = m < r ? (T(m + 1) - u) * lev[r - 1][m] : T(0);
      lev[r][m] = (left + right) * inv_r;
    }
  }
  for (int q = 0; q <= 3; ++q) {
    if (q > k) {
      for (int m = 0; m <= k; ++m) b[q][m] = T(0);
      continue;
    }
    T cur[MAX_ORDER + 2];
    int len = k - q + 1;
    for (int m = 0; m < len; ++m) cur[m] = lev[k - q][m];
    for (int step = 0; step < q; ++step) {  // one difference, from the right end down
      cur[len] = T(0);
      for (int m = len; m >= 1; --m) cur[m] = (cur[m - 1] - cur[m]) * inv_h;
      cur[0] = -cur[0] * inv_h;
      ++len;
    }
    for (int m = 0; m <= k; ++m) b[q][m] = cur[m];
  }
}

// Per (point, input): the cell, the local bases (zero outside the span) and the coefficient rows
// they multiply (`zero` for bases that do not exist).
template <typename T, int ORDER>
struct Local {
  T b[4][MAX_ORDER + 1];
  int64_t row[MAX_ORDER + 1];  // basis index, or -1

  inline void compute(const Shape& s, T x, T t0, T h) {
    const int k = ORDER > 0 ? ORDER : s.order;
    const T inv_h = T(1) / h;
    const T pos = (x - t0) * inv_h;
    const T cf = std::floor(pos);
    if (!(cf >= T(0) && cf < T(s.n_cells))) {
      for (int q = 0; q < 4; ++q)
        for (int m = 0; m <= k; ++m) b[q][m] = T(0);
      for (int m = 0; m <= k; ++m) row[m] = -1;
      return;
    }
    local_bases<T, ORDER>(pos - cf, inv_h, k, b);
    const int64_t j0 = (int64_t)cf - k;
    for (int m = 0; m <= k; ++m) {
      const int64_t j = j0 + m;
      row[m] = (j >= 0 && j < s.K) ? j : -1;
    }
  }
};

template <typename T, int ORDER, int D, int P, int NO>
void forward(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
             const T* wb, const T* t0, const T* h, T* val, T* grad, T* sec, int threads) {
  const int64_t n_out = NO > 0 ? NO : s.n_out;
  const int k = ORDER > 0 ? ORDER : s.order;
  const int d = D >= 0 ? D : s.d, np = P >= 0 ? P : s.P;
  const bool need1 = d > 0, need2 = np > 0;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> zero(n_out, T(0));
    Local<T, ORDER> loc;
    T sil[4], g[MAX_D], e[MAX_P], q[MAX_P];
    const T* c[MAX_ORDER + 1];
    std::vector<T> sg(BLOCK * s.n_in);
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < s.n; n0 += BLOCK) {
      const int64_t n1 = n0 + BLOCK < s.n ? n0 + BLOCK : s.n;
      sigmoids(x + n0 * s.n_in, (n1 - n0) * s.n_in, sg.data());
      for (int64_t n = n0; n < n1; ++n) {
        T* vn = val + n * n_out;
        T* gn = grad + n * d * n_out;
        T* sn = sec + n * np * n_out;
        std::memset(vn, 0, sizeof(T) * n_out);
        std::memset(gn, 0, sizeof(T) * d * n_out);
        std::memset(sn, 0, sizeof(T) * np * n_out);
        for (int64_t i = 0; i < s.n_in; ++i) {
          const int64_t ni = n * s.n_in + i;
          silu_derivs(x[ni], sg[ni - n0 * s.n_in], sil);
          loc.compute(s, x[ni], t0[i], h[i]);
          const T* ci = coef + i * s.K * n_out;
          for (int m = 0; m <= k; ++m) c[m] = loc.row[m] >= 0 ? ci + loc.row[m] * n_out : zero.data();
          for (int a = 0; a < d; ++a) g[a] = dh[ni * d + a];
          for (int p = 0; p < np; ++p) e[p] = d2h[ni * np + p];
          quadratic(s.mode, d, np, g, s.mode == 0 ? m2 + ni * np : nullptr, q);
          const T* w = wb + i * n_out;
          const T s0 = sil[0], s1 = sil[1], s2 = sil[2];
#pragma omp simd
          for (int64_t o = 0; o < n_out; ++o) {
            T p0 = w[o] * s0, p1 = w[o] * s1, p2 = w[o] * s2;
            for (int m = 0; m <= k; ++m) {
              const T cm = c[m][o];
              p0 += loc.b[0][m] * cm;
              if (need1) p1 += loc.b[1][m] * cm;
              if (need2) p2 += loc.b[2][m] * cm;
            }
            vn[o] += p0;
            for (int a = 0; a < d; ++a) gn[o * d + a] += p1 * g[a];
            for (int p = 0; p < np; ++p) sn[o * np + p] += p1 * e[p] + p2 * q[p];
          }
        }
      }
    }
  }
}

// Gradients of sum(gval val) + sum(ggrad grad) + sum(gsec sec) w.r.t. x, dh, d2h, m2 (mode 0;
// through a formed m2 its gradient goes into that of dh), coef, wb.
template <typename T, int ORDER, int D, int P, int NO>
void backward(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
              const T* wb, const T* t0, const T* h, const T* gval, const T* ggrad, const T* gsec,
              T* gx, T* gdh, T* gd2h, T* gm2, T* gcoef, T* gwb, int threads) {
  const int64_t n_out = NO > 0 ? NO : s.n_out;
  const int k = ORDER > 0 ? ORDER : s.order;
  const int d = D >= 0 ? D : s.d, np = P >= 0 ? P : s.P;
  const int64_t n_coef = s.n_in * s.K * n_out, n_wb = s.n_in * n_out;
  const int64_t per_thread = n_coef + n_wb + n_out;  // + a discarded row
  std::vector<T> acc((size_t)threads * per_thread, T(0));
#pragma omp parallel num_threads(threads)
  {
    T* my = acc.data() + (size_t)omp_get_thread_num() * per_thread;
    T* dump = my + n_coef + n_wb;
    std::vector<T> zero(n_out, T(0)), buf(3 * n_out);
    T* P1 = buf.data();  // first derivative per output
    T* P2 = P1 + n_out;  // second derivative
    T* X = P2 + n_out;   // contribution to d/dx_i per output
    Local<T, ORDER> loc;
    T sil[4], g[MAX_D], e[MAX_P], q[MAX_P], r2q[MAX_P];
    const T* c[MAX_ORDER + 1];
    T* gc[MAX_ORDER + 1];
    std::vector<T> sg(BLOCK * s.n_in);
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < s.n; n0 += BLOCK) {
      const int64_t n1 = n0 + BLOCK < s.n ? n0 + BLOCK : s.n;
      sigmoids(x + n0 * s.n_in, (n1 - n0) * s.n_in, sg.data());
      for (int64_t n = n0; n < n1; ++n) {
        const T* gv = gval + n * n_out;
        const T* gg = ggrad + n * d * n_out;
        const T* gs = gsec + n * np * n_out;
        for (int64_t i = 0; i < s.n_in; ++i) {
          const int64_t ni = n * s.n_in + i;
          silu_derivs(x[ni], sg[ni - n0 * s.n_in], sil);
          loc.compute(s, x[ni], t0[i], h[i]);
          const T* ci = coef + i * s.K * n_out;
          T* gci = my + i * s.K * n_out;
          for (int m = 0; m <= k; ++m) {
            c[m] = loc.row[m] >= 0 ? ci + loc.row[m] * n_out : zero.data();
            gc[m] = loc.row[m] >= 0 ? gci + loc.row[m] * n_out : dump;
          }
          for (int a = 0; a < d; ++a) g[a] = dh[ni * d + a];
          for (int p = 0; p < np; ++p) e[p] = d2h[ni * np + p];
          quadratic(s.mode, d, np, g, s.mode == 0 ? m2 + ni * np : nullptr, q);
          const T* w = wb + i * n_out;
          T* gw = my + n_coef + i * n_out;
          const T s0 = sil[0], s1 = sil[1], s2 = sil[2], s3 = sil[3];
#pragma omp simd
          for (int64_t o = 0; o < n_out; ++o) {
            // first to third derivatives of edge (i, o)
            T p1 = w[o] * s1, p2 = w[o] * s2, p3 = w[o] * s3;
            for (int m = 0; m <= k; ++m) {
              const T cm = c[m][o];
              p1 += loc.b[1][m] * cm;
              p2 += loc.b[2][m] * cm;
              p3 += loc.b[3][m] * cm;
            }
            // a1, a2: what the first and second derivatives multiply in the forward, contracted
            // with the output gradients
            T a1 = T(0), a2 = T(0);
            for (int a = 0; a < d; ++a) a1 += gg[o * d + a] * g[a];
            for (int p = 0; p < np; ++p) {
              a1 += gs[o * np + p] * e[p];
              a2 += gs[o * np + p] * q[p];
            }
            const T a0 = gv[o];
            P1[o] = p1, P2[o] = p2;
            X[o] = p1 * a0 + p2 * a1 + p3 * a2;
            gw[o] += s0 * a0 + s1 * a1 + s2 * a2;
            for (int m = 0; m <= k; ++m) gc[m][o] += loc.b[0][m] * a0 + loc.b[1][m] * a1 + loc.b[2][m] * a2;
          }
          T acc_x = T(0);
#pragma omp simd reduction(+ : acc_x)
          for (int64_t o = 0; o < n_out; ++o) acc_x += X[o];
          gx[ni] = acc_x;
          T* gd = gdh + ni * d;
          for (int a = 0; a < d; ++a) {
            T r = T(0);
#pragma omp simd reduction(+ : r)
            for (int64_t o = 0; o < n_out; ++o) r += P1[o] * gg[o * d + a];
            gd[a] = r;
          }
          for (int p = 0; p < np; ++p) {
            T r1 = T(0), r2 = T(0);
#pragma omp simd reduction(+ : r1, r2)
            for (int64_t o = 0; o < n_out; ++o) r1 += P1[o] * gs[o * np + p], r2 += P2[o] * gs[o * np + p];
            gd2h[ni * np + p] = r1, r2q[p] = r2;
          }
          if (s.mode == 0) {
            for (int p = 0; p < np; ++p) gm2[ni * np + p] = r2q[p];
          } else {
            quadratic_backward(s.mode, d, np, g, r2q, gd);
          }
        }
      }
    }
  }
  for (int64_t j = 0; j < n_coef + n_wb; ++j) {  // sum the per-thread buffers
    T v = T(0);
    for (int t = 0; t < threads; ++t) v += acc[(size_t)t * per_thread + j];
    (j < n_coef ? gcoef[j] : gwb[j - n_coef]) = v;
  }
}

// One output (the last layer of a scalar problem's KAN), cubic: the loop over outputs above would
// be a single iteration, so these vectorise across the (point, input) pairs of a block instead.
// Pair j = (point in block) * n_in + input. One simd loop forms every pair's silu derivatives,
// cell, bases and its k + 1 coefficients (gathered; a basis out of range reads 0), then plain
// loops sum over the inputs of each point (forward) or scatter the coefficient gradients
// (backward), in the same order as the loops above.
// Per pair of a block: the input's first knot, 1 / spacing, base weight and coefficient offset.
template <typename T>
struct PairTable {
  std::vector<T> lo, ih, w;
  std::vector<int> off, pt;  // pt: the pair's point within the block
  PairTable(const Shape& s, const T* t0, const T* h, const T* wb) {
    const int64_t span = BLOCK * s.n_in;
    lo.resize(span), ih.resize(span), w.resize(span), off.resize(span), pt.resize(span);
    for (int64_t j = 0; j < span; ++j) {
      const int64_t i = j % s.n_in;
      lo[j] = t0[i], ih[j] = T(1) / h[i], w[j] = wb[i], off[j] = (int)(i * s.K), pt[j] = (int)(j / s.n_in);
    }
  }
};

// cf[j] = the cell of pair j's x as a float, clamped to [-1, n_cells] (-1 for NaN), so that its
// conversion to int is defined. A loop of its own: GCC 12 does not vectorise a loop where a
// select feeds a float-to-int conversion.
template <typename T>
inline void cells(const T* x, const T* lo, const T* ih, T n_cells, int64_t n, T* cf) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T pos = (x[j] - lo[j]) * ih[j];
    cf[j] = std::floor(!(pos >= T(-1)) ? T(-1) : (pos > n_cells ? n_cells : pos));
  }
}

// The coefficients cm[r] of bases c - 3 + r, r = 0..3, of a pair at cell c (0 where the basis
// does not exist or x is outside the span), and their flat rows (-1 for none). Branch-free.
template <typename T>
inline void cubic_rows(const Shape& s, const T* coef, int off, bool in, int c, T cm[4], int rows[4]) {
  for (int r = 0; r < 4; ++r) {
    const int idx = c - 3 + r;
    const bool ok = in & (idx >= 0) & (idx < (int)s.K);
    const T v = coef[off + (ok ? idx : 0)];
    cm[r] = ok ? v : T(0);
    rows[r] = ok ? off + idx : -1;
  }
}

// One pair's edge in the single-output path, as functions of plain values: under `omp simd`,
// an array declared in the loop body becomes a per-lane array and GCC 12 then vectorises nothing,
// while arrays local to an inlined callee are scalarised. x: the input, cf: its cell (`cells`),
// lo, ih, off, w: the pair's table entries. edge_forward and edge_backward repeat their first
// lines on purpose: one shared struct holding the arrays made the backward loop 1.8x slower.
template <typename T>
struct Edge3 {
  T v0, v1, v2;
};

// The edge's value, first and second derivatives.
template <typename T>
inline Edge3<T> edge_forward(const Shape& s, const T* coef, T x, T sg, T cf, T n_cells, T lo, T ih, int off, T w) {
  T sil[4], b[4][MAX_ORDER + 1], cm[4];
  int rows[4];
  const bool in = (cf >= T(0)) & (cf < n_cells);
  silu_derivs(x, sg, sil);
  local_bases<T, 3>(in ? (x - lo) * ih - cf : T(0), ih, 3, b);
  cubic_rows(s, coef, off, in, (int)cf, cm, rows);
  T p0 = w * sil[0], p1 = w * sil[1], p2 = w * sil[2];
  for (int r = 0; r < 4; ++r) p0 += b[0][r] * cm[r], p1 += b[1][r] * cm[r], p2 += b[2][r] * cm[r];
  return {p0, p1, p2};
}

// The edge's first and second derivatives and the gradient w.r.t. x, given a0, a1, a2 (what the
// value, first and second derivatives multiply); stores the base weight's gradient in *gw and
// the coefficients' in gc[r * stride] at rows[r * stride] (-1: none).
template <typename T>
inline Edge3<T> edge_backward(const Shape& s, const T* coef, T x, T sg, T cf, T n_cells, T lo, T ih, int off, T w,
                              T a0, T a1, T a2, T* gw, T* gc, int* rows, int64_t stride) {
  T sil[4], b[4][MAX_ORDER + 1], cm[4];
  int row[4];
  const bool in = (cf >= T(0)) & (cf < n_cells);
  silu_derivs(x, sg, sil);
  local_bases<T, 3>(in ? (x - lo) * ih - cf : T(0), ih, 3, b);
  cubic_rows(s, coef, off, in, (int)cf, cm, row);
  T p1 = w * sil[1], p2 = w * sil[2], p3 = w * sil[3];
  for (int r = 0; r < 4; ++r) p1 += b[1][r] * cm[r], p2 += b[2][r] * cm[r], p3 += b[3][r] * cm[r];
  *gw = sil[0] * a0 + sil[1] * a1 + sil[2] * a2;
  for (int r = 0; r < 4; ++r) {
    gc[r * stride] = b[0][r] * a0 + b[1][r] * a1 + b[2][r] * a2;
    rows[r * stride] = row[r];
  }
  return {p1, p2, p1 * a0 + p2 * a1 + p3 * a2};
}

// a1, a2 of one pair of the single-output backward (as in the general one): what the edge's first
// and second derivatives multiply, contracted with the point's output gradients gg (d), gs (P).
template <typename T>
struct Pair2 {
  T a1, a2;
};

template <typename T>
inline Pair2<T> contract(const Shape& s, int d, int np, const T* g, const T* e, const T* given, const T* gg, const T* gs) {
  T q[MAX_P];
  quadratic(s.mode, d, np, g, given, q);
  T a1 = T(0), a2 = T(0);
  for (int a = 0; a < d; ++a) a1 += gg[a] * g[a];
  for (int p = 0; p < np; ++p) a1 += gs[p] * e[p], a2 += gs[p] * q[p];
  return {a1, a2};
}

// The pair's input-derivative gradients: gd (d) = p1 gg (+ through a formed m2), gd2 (P) = p1 gs,
// gm (P, mode 0) = p2 gs.
template <typename T>
inline void spread(const Shape& s, int d, int np, const T* g, T p1, T p2, const T* gg, const T* gs, T* gd, T* gd2, T* gm) {
  T r2q[MAX_P];
  for (int a = 0; a < d; ++a) gd[a] = p1 * gg[a];
  for (int p = 0; p < np; ++p) gd2[p] = p1 * gs[p], r2q[p] = p2 * gs[p];
  if (s.mode == 0) {
    for (int p = 0; p < np; ++p) gm[p] = r2q[p];
  } else {
    quadratic_backward(s.mode, d, np, g, r2q, gd);
  }
}

template <typename T, int D, int P>
void forward_one(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
                 const T* wb, const T* t0, const T* h, T* val, T* grad, T* sec, int threads) {
  const int d = D >= 0 ? D : s.d, np = P >= 0 ? P : s.P;
  const int64_t n_in = s.n_in, span = BLOCK * n_in;
  const T n_cells = T(s.n_cells);
#pragma omp parallel num_threads(threads)
  {
    const PairTable<T> tab(s, t0, h, wb);
    const T *lo = tab.lo.data(), *ih = tab.ih.data(), *w = tab.w.data();
    const int* off = tab.off.data();
    std::vector<T> sg(span), cell(span), q0(span), q1(span), q2(span);
    T g[MAX_D], e[MAX_P], q[MAX_P], ga[MAX_D], sa[MAX_P];
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < s.n; n0 += BLOCK) {
      const int64_t n1 = n0 + BLOCK < s.n ? n0 + BLOCK : s.n, m = (n1 - n0) * n_in;
      const T* xb = x + n0 * n_in;
      sigmoids(xb, m, sg.data());
      cells(xb, lo, ih, n_cells, m, cell.data());
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const Edge3<T> e = edge_forward(s, coef, xb[j], sg[j], cell[j], n_cells, lo[j], ih[j], off[j], w[j]);
        q0[j] = e.v0, q1[j] = e.v1, q2[j] = e.v2;
      }
      for (int64_t n = n0; n < n1; ++n) {
        T v = T(0);
        for (int a = 0; a < d; ++a) ga[a] = T(0);
        for (int p = 0; p < np; ++p) sa[p] = T(0);
        for (int64_t i = 0; i < n_in; ++i) {
          const int64_t ni = n * n_in + i, j = ni - n0 * n_in;
          for (int a = 0; a < d; ++a) g[a] = dh[ni * d + a];
          for (int p = 0; p < np; ++p) e[p] = d2h[ni * np + p];
          quadratic(s.mode, d, np, g, s.mode == 0 ? m2 + ni * np : nullptr, q);
          v += q0[j];
          for (int a = 0; a < d; ++a) ga[a] += q1[j] * g[a];
          for (int p = 0; p < np; ++p) sa[p] += q1[j] * e[p] + q2[j] * q[p];
        }
        val[n] = v;
        for (int a = 0; a < d; ++a) grad[n * d + a] = ga[a];
        for (int p = 0; p < np; ++p) sec[n * np + p] = sa[p];
      }
    }
  }
}

template <typename T, int D, int P>
void backward_one(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
                  const T* wb, const T* t0, const T* h, const T* gval, const T* ggrad, const T* gsec,
                  T* gx, T* gdh, T* gd2h, T* gm2, T* gcoef, T* gwb, int threads) {
  const int d = D >= 0 ? D : s.d, np = P >= 0 ? P : s.P;
  const int64_t n_in = s.n_in, span = BLOCK * n_in;
  const int64_t n_coef = n_in * s.K, per_thread = n_coef + n_in;
  const T n_cells = T(s.n_cells);
  std::vector<T> acc((size_t)threads * per_thread, T(0));
#pragma omp parallel num_threads(threads)
  {
    T* my = acc.data() + (size_t)omp_get_thread_num() * per_thread;
    const PairTable<T> tab(s, t0, h, wb);
    const T *lo = tab.lo.data(), *ih = tab.ih.data(), *w = tab.w.data();
    const int* off = tab.off.data();
    const int* pt = tab.pt.data();
    std::vector<T> sg(span), cell(span), a0s(span), a1s(span), a2s(span), q1(span), q2(span), gws(span), gcs(4 * span);
    std::vector<int> rowss(4 * span);
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < s.n; n0 += BLOCK) {
      const int64_t n1 = n0 + BLOCK < s.n ? n0 + BLOCK : s.n, m = (n1 - n0) * n_in;
      const T* xb = x + n0 * n_in;
      sigmoids(xb, m, sg.data());
      cells(xb, lo, ih, n_cells, m, cell.data());
      // what the edge's value, first and second derivatives multiply, contracted with the output
      // gradients (a0, a1, a2 of the general backward)
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const int64_t n = n0 + pt[j], ni = n0 * n_in + j;
        const Pair2<T> c = contract(s, d, np, dh + ni * d, d2h + ni * np, s.mode == 0 ? m2 + ni * np : nullptr,
                                    ggrad + n * d, gsec + n * np);
        a0s[j] = gval[n], a1s[j] = c.a1, a2s[j] = c.a2;
      }
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const Edge3<T> e = edge_backward(s, coef, xb[j], sg[j], cell[j], n_cells, lo[j], ih[j], off[j], w[j], a0s[j],
                                         a1s[j], a2s[j], gws.data() + j, gcs.data() + j, rowss.data() + j, span);
        q1[j] = e.v0, q2[j] = e.v1, gx[n0 * n_in + j] = e.v2;
      }
      for (int64_t j0 = 0; j0 < m; j0 += n_in) {  // the scatter into the per-thread sums: scalar
        for (int64_t i = 0; i < n_in; ++i) {
          const int64_t j = j0 + i;
          my[n_coef + i] += gws[j];
          for (int r = 0; r < 4; ++r) {
            const int row = rowss[r * span + j];
            if (row >= 0) my[row] += gcs[r * span + j];
          }
        }
      }
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const int64_t n = n0 + pt[j], ni = n0 * n_in + j;
        spread(s, d, np, dh + ni * d, q1[j], q2[j], ggrad + n * d, gsec + n * np, gdh + ni * d, gd2h + ni * np,
               s.mode == 0 ? gm2 + ni * np : nullptr);
      }
    }
  }
  for (int64_t j = 0; j < n_coef + n_in; ++j) {  // sum the per-thread buffers
    T v = T(0);
    for (int t = 0; t < threads; ++t) v += acc[(size_t)t * per_thread + j];
    (j < n_coef ? gcoef[j] : gwb[j - n_coef]) = v;
  }
}

// Instantiation for the (order, d, P, n_out) at hand: specialised for the cubic layouts of
// d <= 3 and for one output, generic (runtime counts) otherwise.
template <typename T, int ORDER, int D, int P>
struct Kernels {
  template <int NO>
  static void fwd(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
                  const T* wb, const T* t0, const T* h, T* val, T* grad, T* sec, int threads) {
    if constexpr (NO == 1 && ORDER == 3)
      forward_one<T, D, P>(s, x, dh, d2h, m2, coef, wb, t0, h, val, grad, sec, threads);
    else
      forward<T, ORDER, D, P, NO>(s, x, dh, d2h, m2, coef, wb, t0, h, val, grad, sec, threads);
  }
  template <int NO>
  static void bwd(const Shape& s, const T* x, const T* dh, const T* d2h, const T* m2, const T* coef,
                  const T* wb, const T* t0, const T* h, const T* gval, const T* ggrad, const T* gsec,
                  T* gx, T* gdh, T* gd2h, T* gm2, T* gcoef, T* gwb, int threads) {
    if constexpr (NO == 1 && ORDER == 3)
      backward_one<T, D, P>(s, x, dh, d2h, m2, coef, wb, t0, h, gval, ggrad, gsec, gx, gdh, gd2h, gm2,
                            gcoef, gwb, threads);
    else
      backward<T, ORDER, D, P, NO>(s, x, dh, d2h, m2, coef, wb, t0, h, gval, ggrad, gsec, gx, gdh,
                                   gd2h, gm2, gcoef, gwb, threads);
  }
};

template <typename T>
using FwdPtr = void (*)(const Shape&, const T*, const T*, const T*, const T*, const T*, const T*,
                        const T*, const T*, T*, T*, T*, int);
template <typename T>
using BwdPtr = void (*)(const Shape&, const T*, const T*, const T*, const T*, const T*, const T*,
                        const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*, T*, T*,
                        int);

template <typename T>
struct Pair {
  FwdPtr<T> fwd;
  BwdPtr<T> bwd;
};

template <typename T, int ORDER, int D, int P>
Pair<T> both(bool one) {
  using K = Kernels<T, ORDER, D, P>;
  if (one) return {&K::template fwd<1>, &K::template bwd<1>};
  return {&K::template fwd<0>, &K::template bwd<0>};
}

template <typename T>
Pair<T> pick(const Shape& s) {
  const bool one = s.n_out == 1;
  if (s.order == 3) {
#define IF(DD, PP) if (s.d == DD && s.P == PP) return both<T, 3, DD, PP>(one);
    IF(0, 0) IF(1, 0) IF(1, 1) IF(2, 0) IF(2, 1) IF(2, 2) IF(2, 3) IF(3, 0) IF(3, 1) IF(3, 3) IF(3, 6)
#undef IF
    return both<T, 3, -1, -1>(one);
  }
  return both<T, 0, -1, -1>(one);
}

}  // namespace

// dims = [N, n_in, n_out, K, n_cells, order, d, P, mode]; order 1..7, d <= 16, P <= 136, mode
// 0..3 with P matching it (checked by the caller). m2 and gm2 are read and written in mode 0 only.
#define KAN_ENTRY(T, SUFFIX)                                                                      \
  extern "C" void kan_jet_forward_##SUFFIX(const int64_t* dims, const T* x, const T* dh,           \
                                           const T* d2h, const T* m2, const T* coef, const T* wb,  \
                                           const T* t0, const T* h, T* val, T* grad, T* sec,       \
                                           int threads) {                                          \
    Shape s{dims[0], dims[1], dims[2], dims[3], dims[4], (int)dims[5], (int)dims[6], (int)dims[7], \
            (int)dims[8]};                                                                          \
    pick<T>(s).fwd(s, x, dh, d2h, m2, coef, wb, t0, h, val, grad, sec, threads);                  \
  }                                                                                                \
  extern "C" void kan_jet_backward_##SUFFIX(const int64_t* dims, const T* x, const T* dh,          \
                                            const T* d2h, const T* m2, const T* coef, const T* wb, \
                                            const T* t0, const T* h, const T* gval,                \
                                            const T* ggrad, const T* gsec, T* gx, T* gdh,          \
                                            T* gd2h, T* gm2, T* gcoef, T* gwb, int threads) {      \
    Shape s{dims[0], dims[1], dims[2], dims[3], dims[4], (int)dims[5], (int)dims[6], (int)dims[7], \
            (int)dims[8]};                                                                          \
    pick<T>(s).bwd(s, x, dh, d2h, m2, coef, wb, t0, h, gval, ggrad, gsec, gx, gdh, gd2h, gm2,      \
                   gcoef, gwb, threads);                                                         \
  }

KAN_ENTRY(double, f64)
KAN_ENTRY(float, f32)

// The cache key the library was built for (kanpde/nn/build.py passes it with -D): a library found
// in the cache is used only if it reports the key its file name was derived from.
#ifndef KANPDE_BUILD_KEY
#define KANPDE_BUILD_KEY "unknown"
#endif
extern "C" const char* kan_jet_build_key() { return KANPDE_BUILD_KEY; }
