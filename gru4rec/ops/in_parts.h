// How the CPU kernels share out their work among the threads of XLA's pool: `in_parts(pool, n,
// f)` runs f(0) ... f(n - 1), each once, on the calling thread and on n - 1 tasks scheduled in
// the pool, and returns when all have run. Each kernel chooses what a part is (rows of a matrix
// by their index modulo n, so that a row is only ever touched by one thread), so that results
// do not depend on which thread runs which part.
#ifndef GRU4REC_OPS_IN_PARTS_H_
#define GRU4REC_OPS_IN_PARTS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace gru4rec {

// The number of parts for a pool: its threads, between 1 and `most`.
inline int64_t parts_for(xla::ffi::ThreadPool& pool, int64_t most) {
  return std::clamp<int64_t>(std::min<int64_t>(pool.num_threads(), most), 1, 16);
}

// Tasks that start after every part is taken return at once, so `f` (which may refer to the
// caller's stack) is only called while the caller waits.
inline void in_parts(xla::ffi::ThreadPool& pool, int64_t n, const std::function<void(int64_t)>& f) {
  struct State {
    const std::function<void(int64_t)>* f;
    int64_t n;
    std::atomic<int64_t> next{0}, done{0};
  };
  auto s = std::make_shared<State>();
  s->f = &f, s->n = n;
  auto run = [s] {
    for (int64_t part; (part = s->next.fetch_add(1)) < s->n;) {
      (*s->f)(part);
      s->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < n; ++t) pool.Schedule([run] { run(); });
  run();
  while (s->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

}  // namespace gru4rec

#endif  // GRU4REC_OPS_IN_PARTS_H_
