// Branch-free elementary functions shared by the kernels (kan_jet.cpp, mlp_jet.cpp), so that
// loops over them vectorise and no libm call sits in a hot loop. A call into libm from code
// that has used AVX-512 registers can cost a state transition per call: on one Intel Xeon (KVM)
// the KAN layer's forward spent 97 % of its time on the first SSE instruction of glibc's exp
// wrapper, 5x slower than the same source built with scalar loops.
#pragma once

#include <cstdint>
#include <cstring>

// The exp below vectorises only if comparisons may be assumed not to trap (no value changes:
// kanpde never enables floating-point traps). Applies to the functions after the include.
#pragma GCC optimize("no-trapping-math")

namespace kanpde_math {

// expm1(x) in double precision, branch-free so that loops over it vectorise: x = k ln 2 + r,
// |r| <= ln 2 / 2 (Cody-Waite, two-part ln 2), e^r - 1 by its Taylor series to r^13 (truncation
// < 2e-17 relative), 2^k from the exponent bits; x is clamped to [-708, 709] (NaN passes).
inline double expm1_(double x) {
  x = x < -708.0 ? -708.0 : x;
  x = x > 709.0 ? 709.0 : x;
  const double shift = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double m = x * 1.4426950408889634 + shift, k = m - shift;
  const double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  for (double c : {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                   1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0})
    p = p * r + c;
  p *= r;  // e^r - 1
  uint64_t bits;
  std::memcpy(&bits, &m, 8);  // k in the low bits
  bits = (bits + 1023) << 52;
  double scale;  // 2^k
  std::memcpy(&scale, &bits, 8);
  return scale * p + (scale - 1.0);
}

inline double tanh_(double z) {  // -expm1(-2|z|) / (2 + expm1(-2|z|)), signed
  const double a = z < 0 ? -z : z, e = expm1_(-2 * a), t = -e / (2 + e);
  return z < 0 ? -t : t;
}

inline double sigmoid_(double z) { return 1 / (2 + expm1_(-z)); }

}  // namespace kanpde_math
