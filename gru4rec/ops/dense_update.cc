// DenseAdagrad's update of a dense weight on the CPU, as one XLA FFI call
// (gru4rec/ops/dense_adagrad.py states it; gru4rec/ops/jax_dispatch.py calls this).
//
// Per element, Optimizer.dense's textbook update (gru4rec/optimizers.py), in the order XLA
// computes it:
//   y = 1/sqrt((A + eps) + g^2), A' = A + g^2,
//   with momentum: V' = mom V - lr (g y + lmbd P), P' = P + V';
//   without: P' = decay P - lr g y (decay = 1 - lr lmbd), or P - lr g y without L2.
// Nothing changes where valid is not positive (an all-padding step). P, A and V are updated in
// place (the call aliases them to its outputs); without momentum V is empty.
//
// Why: XLA ran this as four passes over the weight (1/sqrt into a temporary, then P, V and A,
// each a pass of its own, as they are updated in place); here it is one.
//
// The same bits as XLA: with AVX2 and FMA the kernel computes 1/sqrt as XLA does (xla_rsqrt.h)
// and contracts (A + eps) + g^2, A + g^2, g y + lmbd P, mom V - lr (...), decay P - lr g y and
// P - lr g y into fused multiply-adds as XLA's CPU code does (jaxlib 0.10; read from its object
// code); elsewhere it rounds each operation once. The caller checks on a small problem that the
// kernel's results are XLA's bit for bit before it uses it (jax_dispatch.py).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "in_parts.h"
#include "xla_rsqrt.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Rates {
  float lr, mom, lmbd, decay, eps;
};

// Elements [0, n) of the weight p, its accumulator a and velocity v (null without momentum).
void update_plain(const float* g, float* p, float* a, float* v, int64_t n, const Rates& k) {
  for (int64_t j = 0; j < n; ++j) {
    const float gg = g[j] * g[j], t = g[j] * (1.0f / std::sqrt((a[j] + k.eps) + gg));
    if (v) {
      v[j] = v[j] * k.mom - (k.lmbd != 0 ? t + p[j] * k.lmbd : t) * k.lr;
      p[j] += v[j];
    } else {
      p[j] = (k.lmbd != 0 ? p[j] * k.decay : p[j]) - t * k.lr;
    }
    a[j] += gg;
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline void update8(const float* g, float* p, float* a, float* v,
                                                        const Rates& k) {
  const __m256 G = _mm256_loadu_ps(g), P = _mm256_loadu_ps(p), A = _mm256_loadu_ps(a);
  const __m256 y = gru4rec::rsqrt8(_mm256_fmadd_ps(G, G, _mm256_add_ps(A, _mm256_set1_ps(k.eps))));
  if (v) {  // L2 inside the step
    const __m256 t = k.lmbd != 0 ? _mm256_fmadd_ps(G, y, _mm256_mul_ps(P, _mm256_set1_ps(k.lmbd)))
                                 : _mm256_mul_ps(G, y);
    const __m256 s = _mm256_mul_ps(t, _mm256_set1_ps(k.lr));
    const __m256 d = _mm256_fmsub_ps(_mm256_loadu_ps(v), _mm256_set1_ps(k.mom), s);
    _mm256_storeu_ps(v, d);
    _mm256_storeu_ps(p, _mm256_add_ps(P, d));
  } else if (k.lmbd != 0) {  // L2 as a decay of P
    const __m256 s = _mm256_mul_ps(_mm256_mul_ps(G, y), _mm256_set1_ps(k.lr));
    _mm256_storeu_ps(p, _mm256_fmsub_ps(P, _mm256_set1_ps(k.decay), s));
  } else {
    const __m256 t = _mm256_mul_ps(G, y);
    _mm256_storeu_ps(p, _mm256_fnmadd_ps(t, _mm256_set1_ps(k.lr), P));
  }
  _mm256_storeu_ps(a, _mm256_fmadd_ps(G, G, A));
}

// The last n % 8 elements through update8, in a padded copy: every element rounds alike.
__attribute__((target("avx2,fma"))) void update_avx2(const float* g, float* p, float* a, float* v, int64_t n,
                                                     const Rates& k) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) update8(g + j, p + j, a + j, v ? v + j : nullptr, k);
  if (j == n) return;
  float tg[8] = {}, tp[8] = {}, ta[8] = {}, tv[8] = {};
  const int64_t r = n - j;
  std::copy(g + j, g + n, tg), std::copy(p + j, p + n, tp), std::copy(a + j, a + n, ta);
  if (v) std::copy(v + j, v + n, tv);
  update8(tg, tp, ta, v ? tv : nullptr, k);
  std::copy(tp, tp + r, p + j), std::copy(ta, ta + r, a + j);
  if (v) std::copy(tv, tv + r, v + j);
}
#endif

using UpdateFn = void (*)(const float*, float*, float*, float*, int64_t, const Rates&);

UpdateFn choose() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return update_avx2;
#endif
  return update_plain;
}

const UpdateFn update_span = choose();

ffi::Error DenseUpdate(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> P, ffi::Buffer<ffi::F32> A,
                       ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> valid, float lr,
                       float mom, float lmbd, float decay, float eps, ffi::ResultBuffer<ffi::F32> Po,
                       ffi::ResultBuffer<ffi::F32> Ao, ffi::ResultBuffer<ffi::F32> Vo) {
  const bool velocity = V.element_count() > 0;
  if (Po->typed_data() != P.typed_data() || Ao->typed_data() != A.typed_data() ||
      (velocity && Vo->typed_data() != V.typed_data()))
    return ffi::Error(ffi::ErrorCode::kInternal, "dense_update: outputs not aliased to inputs");
  const int64_t n = P.element_count();
  if (A.element_count() != n || g.element_count() != n || (velocity && V.element_count() != n))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "dense_update: P, A, V and g differ in size");
  if (!(valid.typed_data()[0] > 0)) return ffi::Error::Success();  // an all-padding step
  float *p = Po->typed_data(), *a = Ao->typed_data(), *v = velocity ? Vo->typed_data() : nullptr;
  const float* gd = g.typed_data();
  const Rates k{lr, mom, lmbd, decay, eps};
  // parts of whole cache lines (16 floats), at least 4096 elements each
  const int64_t parts = std::clamp<int64_t>(n / 4096, 1, gru4rec::parts_for(pool, 16));
  const int64_t chunk = (n / parts + 15) / 16 * 16;
  gru4rec::in_parts(pool, parts, [&](int64_t part) {
    const int64_t lo = std::min(n, part * chunk), hi = std::min(n, lo + chunk);
    update_span(gd + lo, p + lo, a + lo, v ? v + lo : nullptr, hi - lo, k);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(gru4rec_dense_update, DenseUpdate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("lr")
                                  .Attr<float>("mom")
                                  .Attr<float>("lmbd")
                                  .Attr<float>("decay")
                                  .Attr<float>("eps")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
