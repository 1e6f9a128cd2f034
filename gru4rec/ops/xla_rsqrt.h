// 1/sqrt(x) as XLA's CPU code computes it (jaxlib 0.10): the processor's estimate y0 (rsqrtps),
// then y0 + (-y0 / 2) (x y0 y0 - 1) with two fused multiply-adds; the estimate itself where x
// is below the smallest normal float or infinite. The kernels that must give XLA's bits
// (sparse_update.cc, dense_update.cc) use it; their callers check that they do.
#ifndef GRU4REC_OPS_XLA_RSQRT_H_
#define GRU4REC_OPS_XLA_RSQRT_H_

#if defined(__x86_64__)
#include <immintrin.h>

#include <cmath>

namespace gru4rec {

__attribute__((target("avx2,fma"))) inline __m256 rsqrt8(__m256 x) {
  const __m256 y0 = _mm256_rsqrt_ps(x);
  const __m256 h = _mm256_fmadd_ps(_mm256_mul_ps(x, y0), y0, _mm256_set1_ps(-1.0f));
  const __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(y0, _mm256_set1_ps(-0.5f)), h, y0);
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  const __m256 inf = _mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ);
  return _mm256_blendv_ps(y, y0, _mm256_or_ps(tiny, inf));
}

__attribute__((target("avx2,fma"))) inline __m128 rsqrt1(__m128 x) {
  const __m128 y0 = _mm_rsqrt_ss(x);
  const __m128 h = _mm_fmadd_ss(_mm_mul_ss(x, y0), y0, _mm_set_ss(-1.0f));
  const __m128 y = _mm_fmadd_ss(_mm_mul_ss(y0, _mm_set_ss(-0.5f)), h, y0);
  const float xs = _mm_cvtss_f32(x);
  return (xs < 1.17549435e-38f || xs == INFINITY) ? y0 : y;
}

}  // namespace gru4rec

#endif  // defined(__x86_64__)
#endif  // GRU4REC_OPS_XLA_RSQRT_H_
