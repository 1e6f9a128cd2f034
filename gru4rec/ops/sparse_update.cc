// SparseAdagrad's update of an item matrix on the CPU, as one XLA FFI call
// (gru4rec/ops/sparse_adagrad.py states it; gru4rec/ops/jax_dispatch.py calls this).
//
// Per occurrence k of row r = idx_k, from the rows as they were before the call:
//   d_k = mom V[r] - lr (g_k / sqrt(A[r] + g_k^2 + eps) + lmbd P[r])
// then, occurrence by occurrence: P[r] += d_k, A[r] += g_k * g_k, V[r] = d_k. P, A and V are
// updated in place (the call aliases them to its outputs). Without momentum, V is empty and
// d_k = -lr (...).
//
// Why: XLA gathered A's and V's rows into a matrix, computed d in a second one, and the
// scatters read them again: three passes over rows that come from main memory. Here each row
// is read and written once. The rows are split among the threads of XLA's pool by their index
// modulo the number of parts, so a row's occurrences stay in order on one thread.
//
// The same bits as XLA: XLA's CPU code (jaxlib 0.10) computes 1/sqrt(x) as the processor's
// estimate (rsqrtps) refined by one Newton step, and contracts A + g^2, g y + lmbd P and
// mom V - t into fused multiply-adds; with AVX2 and FMA this kernel does the same, in the same
// order (every other sum, such as A's increments, rounded twice, as XLA's scatters do).
// Elsewhere it rounds each operation once. The caller checks on a small problem that the kernel's results are
// XLA's bit for bit before it uses it (jax_dispatch.py), so a jaxlib that computes otherwise
// gets XLA's own update, not different numbers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "in_parts.h"
#include "xla_rsqrt.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Rates {
  float lr, mom, lmbd, eps;
};

// The old rows of an occurrence: P's, A's and V's values before the call.
struct Old {
  const float *p, *a, *v;
};

// One span of a row: reads the old rows and g, adds d to p and g * g to a, writes d to v. The
// old rows may be p, a and v themselves (each element is read before it is written); without
// momentum o.v and v are null.
void update_plain(Old o, const float* g, float* p, float* a, float* v, int64_t n, const Rates& k) {
  for (int64_t j = 0; j < n; ++j) {
    const float x = (o.a[j] + g[j] * g[j]) + k.eps;
    float t = g[j] * (1.0f / std::sqrt(x));
    if (k.lmbd != 0) t += k.lmbd * o.p[j];
    const float d = o.v ? o.v[j] * k.mom - t * k.lr : -(t * k.lr);
    p[j] += d;
    a[j] += g[j] * g[j];
    if (v) v[j] = d;
  }
}

#if defined(__x86_64__)
using gru4rec::rsqrt1;
using gru4rec::rsqrt8;

__attribute__((target("avx2,fma"))) void update_avx2(Old o, const float* g, float* p, float* a, float* v,
                                                     int64_t n, const Rates& k) {
  const __m256 eps = _mm256_set1_ps(k.eps), lr = _mm256_set1_ps(k.lr), mom = _mm256_set1_ps(k.mom),
               lmbd = _mm256_set1_ps(k.lmbd);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 G = _mm256_loadu_ps(g + j);
    const __m256 y = rsqrt8(_mm256_add_ps(_mm256_fmadd_ps(G, G, _mm256_loadu_ps(o.a + j)), eps));
    const __m256 t = k.lmbd != 0 ? _mm256_fmadd_ps(G, y, _mm256_mul_ps(_mm256_loadu_ps(o.p + j), lmbd))
                                 : _mm256_mul_ps(G, y);
    const __m256 d = o.v ? _mm256_fmsub_ps(_mm256_loadu_ps(o.v + j), mom, _mm256_mul_ps(t, lr))
                         : _mm256_xor_ps(_mm256_mul_ps(t, lr), _mm256_set1_ps(-0.0f));
    _mm256_storeu_ps(p + j, _mm256_add_ps(_mm256_loadu_ps(p + j), d));
    _mm256_storeu_ps(a + j, _mm256_add_ps(_mm256_loadu_ps(a + j), _mm256_mul_ps(G, G)));
    if (v) _mm256_storeu_ps(v + j, d);
  }
  for (; j < n; ++j) {
    const __m128 G = _mm_set_ss(g[j]);
    const __m128 y = rsqrt1(_mm_add_ss(_mm_fmadd_ss(G, G, _mm_set_ss(o.a[j])), _mm_set_ss(k.eps)));
    const __m128 t = k.lmbd != 0 ? _mm_fmadd_ss(G, y, _mm_mul_ss(_mm_set_ss(o.p[j]), _mm_set_ss(k.lmbd)))
                                 : _mm_mul_ss(G, y);
    const __m128 step = _mm_mul_ss(t, _mm_set_ss(k.lr));
    const float d =
        o.v ? _mm_cvtss_f32(_mm_fmsub_ss(_mm_set_ss(o.v[j]), _mm_set_ss(k.mom), step)) : -_mm_cvtss_f32(step);
    p[j] += d;
    a[j] += g[j] * g[j];
    if (v) v[j] = d;
  }
}
#endif

using UpdateFn = void (*)(Old, const float*, float*, float*, float*, int64_t, const Rates&);

UpdateFn choose() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return update_avx2;
#endif
  return update_plain;
}

const UpdateFn update_span = choose();

struct Work {
  float *p, *a, *v;
  const int32_t* idx;
  const float* g;
  std::vector<int32_t> next;  // the next occurrence of the same row, -1 after the last
  std::vector<char> first;    // whether an occurrence is its row's first
  int64_t n, dim, parts;
  Rates rates;
};

// next and first, with an open-addressing table of the rows seen so far.
void link_repeats(Work& w) {
  int64_t size = 1;
  while (size < 2 * w.n) size <<= 1;
  std::vector<int32_t> row(size, -1), last(size);
  w.next.assign(w.n, -1);
  w.first.assign(w.n, 1);
  for (int64_t k = 0; k < w.n; ++k) {
    const int32_t r = w.idx[k];
    int64_t s = (static_cast<uint32_t>(r) * 2654435761u) & (size - 1);
    while (row[s] != -1 && row[s] != r) s = (s + 1) & (size - 1);
    if (row[s] == r) {
      w.next[last[s]] = static_cast<int32_t>(k), w.first[k] = 0;
    } else {
      row[s] = r;
    }
    last[s] = static_cast<int32_t>(k);
  }
}

// The rows of an occurrence a few places ahead: the update waits on memory, not on arithmetic.
void prefetch_rows(const Work& w, int64_t row) {
  const int64_t off = row * w.dim;
  for (int64_t j = 0; j < w.dim; j += 16) {
    __builtin_prefetch(w.p + off + j, 1);
    __builtin_prefetch(w.a + off + j, 1);
    if (w.v) __builtin_prefetch(w.v + off + j, 1);
  }
}

// The occurrences of the rows of one part; a repeated row's occurrences all at its first, from
// a copy of its old rows.
void update_part(const Work& w, int64_t part, std::vector<float>& old) {
  constexpr int64_t ahead = 8;
  const int64_t mask = w.parts - 1, D = w.dim;
  for (int64_t k = 0; k < w.n; ++k) {
    if (k + ahead < w.n && w.first[k + ahead] && (w.idx[k + ahead] & mask) == part)
      prefetch_rows(w, w.idx[k + ahead]);
    const int64_t row = w.idx[k];
    if ((row & mask) != part || !w.first[k]) continue;
    float *p = w.p + row * D, *a = w.a + row * D, *v = w.v ? w.v + row * D : nullptr;
    if (w.next[k] < 0) {
      update_span({p, a, v}, w.g + k * D, p, a, v, D, w.rates);
      continue;
    }
    float* o = old.data();
    std::memcpy(o, p, D * sizeof(float));
    std::memcpy(o + D, a, D * sizeof(float));
    if (v) std::memcpy(o + 2 * D, v, D * sizeof(float));
    for (int64_t m = k; m >= 0; m = w.next[m])
      update_span({o, o + D, v ? o + 2 * D : nullptr}, w.g + m * D, p, a, v, D, w.rates);
  }
}

ffi::Error SparseUpdate(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> P, ffi::Buffer<ffi::F32> A,
                        ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::S32> idx, ffi::Buffer<ffi::F32> g, float lr,
                        float mom, float lmbd, float eps, ffi::ResultBuffer<ffi::F32> Po,
                        ffi::ResultBuffer<ffi::F32> Ao, ffi::ResultBuffer<ffi::F32> Vo) {
  const bool velocity = V.element_count() > 0;
  if (Po->typed_data() != P.typed_data() || Ao->typed_data() != A.typed_data() ||
      (velocity && Vo->typed_data() != V.typed_data()))
    return ffi::Error(ffi::ErrorCode::kInternal, "sparse_update: outputs not aliased to inputs");
  const int64_t n = idx.element_count();
  if (n == 0 || g.element_count() == 0) return ffi::Error::Success();  // nothing to update
  const int64_t dim = g.element_count() / n, rows = P.element_count() / dim;
  const int32_t* ix = idx.typed_data();
  if (std::any_of(ix, ix + n, [rows](int32_t r) { return r < 0 || r >= rows; }))
    return ffi::Error(ffi::ErrorCode::kOutOfRange, "sparse_update: a row index is out of range");
  Work w;
  w.p = Po->typed_data(), w.a = Ao->typed_data(), w.v = velocity ? Vo->typed_data() : nullptr;
  w.idx = ix, w.g = g.typed_data(), w.n = n, w.dim = dim, w.rates = {lr, mom, lmbd, eps};
  link_repeats(w);
  w.parts = gru4rec::parts_for(pool, 16);
  while (w.parts & (w.parts - 1)) w.parts &= w.parts - 1;  // a power of two: a mask, not a division
  gru4rec::in_parts(pool, w.parts, [&w](int64_t part) {
    std::vector<float> old(3 * w.dim);
    update_part(w, part, old);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(gru4rec_sparse_update, SparseUpdate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("lr")
                                  .Attr<float>("mom")
                                  .Attr<float>("lmbd")
                                  .Attr<float>("eps")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
