// The row scatters that end SparseAdagrad's update on the CPU, as one XLA FFI call
// (gru4rec/ops/scatter_rows.py builds and registers it; docs/performance.md has the timings).
//
// For every occurrence k, in order: P[idx_k] += d_k, A[idx_k] += g_k * g_k and V[idx_k] = d_k
// (the update with momentum). P, A and V are updated in place (the call aliases them to its
// outputs). These are the additions of XLA's three scatters in the same order, so the
// results are the same bits; built with -ffp-contract=off, as a fused multiply-add would
// round A's increment once instead of twice.
//
// Why: XLA runs three scatter operations, each a loop over all the occurrences. Here the rows are
// split among the threads of XLA's pool by their index modulo the number of parts, so every
// row's occurrences stay in order on one thread, and each occurrence touches its three rows
// at once.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Work {
  float* p;
  float* a;
  float* v;
  const int32_t* idx;
  const float* g;
  const float* d;
  int64_t n, dim, parts;
  std::atomic<int64_t> next{0}, done{0};
};

// The rows of an occurrence a few places ahead: the scatters wait on memory, not on arithmetic.
void prefetch_rows(const Work& w, int64_t row) {
  const int64_t off = row * w.dim;
  for (int64_t j = 0; j < w.dim; j += 16) {
    __builtin_prefetch(w.p + off + j, 1);
    __builtin_prefetch(w.a + off + j, 1);
    __builtin_prefetch(w.v + off + j, 1);
  }
}

void scatter_part(const Work& w, int64_t part) {
  constexpr int64_t ahead = 8;
  for (int64_t k = 0; k < w.n; ++k) {
    if (k + ahead < w.n) {
      const int64_t next = w.idx[k + ahead];
      if ((next & (w.parts - 1)) == part) prefetch_rows(w, next);
    }
    const int64_t row = w.idx[k];
    if ((row & (w.parts - 1)) != part) continue;
    float* __restrict p = w.p + row * w.dim;
    float* __restrict a = w.a + row * w.dim;
    const float* __restrict g = w.g + k * w.dim;
    const float* __restrict d = w.d + k * w.dim;
    float* __restrict v = w.v + row * w.dim;
    for (int64_t j = 0; j < w.dim; ++j) {
      p[j] += d[j];
      a[j] += g[j] * g[j];
      v[j] = d[j];
    }
  }
}

// Takes parts until none is left; the caller and every scheduled task run this.
void run_parts(const std::shared_ptr<Work>& w) {
  for (int64_t part; (part = w->next.fetch_add(1)) < w->parts;) {
    scatter_part(*w, part);
    w->done.fetch_add(1, std::memory_order_release);
  }
}

ffi::Error Scatter(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> P, ffi::Buffer<ffi::F32> A,
                   ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::S32> idx, ffi::Buffer<ffi::F32> g,
                   ffi::Buffer<ffi::F32> d, ffi::ResultBuffer<ffi::F32> Po,
                   ffi::ResultBuffer<ffi::F32> Ao, ffi::ResultBuffer<ffi::F32> Vo) {
  if (Po->typed_data() != P.typed_data() || Ao->typed_data() != A.typed_data() ||
      Vo->typed_data() != V.typed_data())
    return ffi::Error(ffi::ErrorCode::kInternal, "scatter_rows: outputs not aliased to inputs");
  const int64_t n = idx.element_count();
  if (n == 0) return ffi::Error::Success();
  const int64_t dim = g.element_count() / n, rows = P.element_count() / dim;
  const int32_t* ix = idx.typed_data();
  if (std::any_of(ix, ix + n, [rows](int32_t r) { return r < 0 || r >= rows; }))
    return ffi::Error(ffi::ErrorCode::kOutOfRange, "scatter_rows: a row index is out of range");
  auto w = std::make_shared<Work>();
  w->p = Po->typed_data(), w->a = Ao->typed_data(), w->v = Vo->typed_data();
  w->idx = ix, w->g = g.typed_data(), w->d = d.typed_data(), w->n = n, w->dim = dim;
  w->parts = std::clamp<int64_t>(pool.num_threads(), 1, 16);
  while (w->parts & (w->parts - 1)) w->parts &= w->parts - 1;  // a power of two: a mask, not a division
  for (int64_t t = 1; t < w->parts; ++t) pool.Schedule([w] { run_parts(w); });
  run_parts(w);
  while (w->done.load(std::memory_order_acquire) < w->parts) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(gru4rec_scatter_rows, Scatter,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
