// The BPR-max loss of a training step and its gradient w.r.t. the raw scores, as an XLA FFI
// call: the score-matrix half of ScoreLoss (gru4rec/ops/score_loss.py) on the CPU. The
// products around it (h O^T before, dR O and dR^T h after) stay XLA's.
//
// R (B x K) holds the raw scores h O^T + b - logq lq; row i's positive is column i, the
// other active columns (colmask) are its negatives. With Y = act(R) (linear, or ELU with
// parameter alpha: Y = R for R >= 0, else alpha (exp(R) - 1)), per active row (rowmask):
//   s      = softmax of Y over the row's negatives (0 elsewhere; 0 where it has none)
//   sigma  = sigmoid(Y_i - Y_j)
//   loss_i = -log(sum_j s_j sigma_j + 1e-24) + bpreg sum_j s_j Y_j^2          (spec 6)
// and, with A = sum_j s_j sigma_j + 1e-24, G = (A - 1e-24) / -A + bpreg sum_j s_j Y_j^2:
//   dL/dY_j = s_j (bpreg Y_j^2 + 2 bpreg Y_j - sigma_j^2 / A - G)   for j != i,
//   dL/dY_i = -sum_j s_j sigma_j (1 - sigma_j) / A,
// then dR = rowmask * dL/dY * act'(R). The outputs are the summed loss over the active rows
// and dR (inactive rows: 0). gru4rec.losses states the same loss for autodiff; the tests check
// this kernel against it and against a float64 NumPy statement of the spec.
//
// Why: XLA ran the loss and its gradient as some 16 passes over the B x K matrix (reductions
// for the row maximum and four row sums among them); the score matrix of a RetailRocket step
// (80 x 2,128) took a quarter of the step on a 2-core AMD EPYC. Here each row takes five
// passes over a few KiB that stay in the cache, rows split among XLA's threads.
//
// exp is computed the same way on every path (Cephes' expf: a degree-6 polynomial after
// reducing by ln 2; at most 0.99 ulp from the exact value on every third float from -87 to 88,
// checked against double precision); with -ffp-contract=off the vectorised
// and the plain clone round alike, and the row sums use 8 partial sums in a fixed order, so
// the results do not depend on the machine's vector width.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "in_parts.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kEps = 1e-24f;  // inside the log (spec 6)
constexpr int kLanes = 8;       // partial sums per row sum

// Each pass is also compiled for AVX2 on x86-64 Linux, chosen when the library loads.
#if defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

inline float exp_f(float x) {
  const float lo = -87.33654f, hi = 88.3762626647949f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = ((p * (r * r) + r) + 1.0f) * scale;
  return x < lo ? 0.0f : y;
}

// f(j, lane) for j in [0, K), in blocks of kLanes consecutive j (one AVX2 vector) and a tail:
// lane = j % kLanes is the partial sum that j adds to.
template <class F>
inline void by_lanes(int64_t K, F f) {
  int64_t j = 0;
  for (; j + kLanes <= K; j += kLanes)
    for (int l = 0; l < kLanes; ++l) f(j + l, l);
  for (int l = 0; j < K; ++j, ++l) f(j, l);
}

inline float sum_lanes(const float* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

struct Params {
  bool elu;     // else linear
  float alpha;  // the ELU's parameter
  float bpreg;
};

inline float elu(float x, float alpha, float e) { return x >= 0 ? x : alpha * (e - 1.0f); }

// Pass 1: the row maximum of Y * negmask (as in gru4rec.losses; masked entries count as 0),
// act of the maximum of R * negmask: act is non-decreasing and act(0) = 0 (ScoreLoss's ELUs
// have alpha >= 0: their names hold no minus sign).
CLONES float row_max(const float* __restrict r, const float* __restrict neg, int64_t K, bool is_elu, float alpha) {
  float mx[kLanes];
  std::fill(mx, mx + kLanes, -INFINITY);
  by_lanes(K, [&](int64_t j, int l) {
    const float v = r[j] * neg[j];
    mx[l] = mx[l] > v ? mx[l] : v;
  });
  float m = mx[0];
  for (int l = 1; l < kLanes; ++l) m = m > mx[l] ? m : mx[l];
  return is_elu ? elu(m, alpha, exp_f(m < 0 ? m : 0.0f)) : m;
}

// Pass 2: Y = act(R) and dY/dR, then the softmax numerators over the negatives; returns their
// sum. (Two loops: GCC vectorises each, where one loop with both exponentials ran 1.3x slower.)
CLONES void activate(const float* __restrict r, float* __restrict y, float* __restrict dact, int64_t K, bool is_elu,
                     float alpha) {
  if (!is_elu) {
    std::copy(r, r + K, y);
    std::fill(dact, dact + K, 1.0f);
    return;
  }
  for (int64_t j = 0; j < K; ++j) {
    const float x = r[j], ex = exp_f(x < 0 ? x : 0.0f);
    y[j] = elu(x, alpha, ex);
    dact[j] = x >= 0 ? 1.0f : alpha * ex;
  }
}

CLONES float numerators(const float* __restrict y, const float* __restrict neg, float* __restrict e, int64_t K,
                        float m) {
  float acc[kLanes] = {};
  by_lanes(K, [&](int64_t j, int l) {
    e[j] = exp_f(y[j] * neg[j] - m) * neg[j];
    acc[l] += e[j];
  });
  return sum_lanes(acc);
}

// Pass 3: s (in place of e) and sigma; sums = {sum s sigma, sum s Y^2, sum s sigma (1 - sigma)}.
// sigmoid(d - Y_j) = 1 / (1 + e_j exp(m - d)), as e_j = exp(Y_j - m) on the negatives; elsewhere
// s_j = 0 and sigma_j is not used (an e_j that underflowed to 0 has s_j = 0 too).
CLONES void weights(const float* __restrict y, float* __restrict e, float* __restrict sg, int64_t K, float z,
                    float c, float* sums) {
  float a[kLanes] = {}, q[kLanes] = {}, t[kLanes] = {};
  by_lanes(K, [&](int64_t j, int l) {
    const float s = e[j] / z, g = 1.0f / (1.0f + e[j] * c);
    e[j] = s, sg[j] = g;
    a[l] += s * g;
    q[l] += s * (y[j] * y[j]);
    t[l] += s * (g * (1.0f - g));
  });
  sums[0] = sum_lanes(a), sums[1] = sum_lanes(q), sums[2] = sum_lanes(t);
}

// Pass 4: the row of dR (w: its rowmask).
CLONES void gradient(const float* __restrict y, const float* __restrict s, const float* __restrict sg,
                     const float* __restrict dact, float* __restrict dr, int64_t K, float bpreg, float a, float g,
                     float w) {
  for (int64_t j = 0; j < K; ++j) {
    const float dy = s[j] * (((bpreg * (y[j] * y[j]) + (2.0f * bpreg) * y[j]) - (sg[j] * sg[j]) / a) - g);
    dr[j] = (w * dy) * dact[j];
  }
}

// One row: its loss (0 if inactive) and its row of dR.
float row_loss(const float* r, const float* colmask, float w, int64_t i, int64_t K, const Params& p, float* dr,
               std::vector<float>& scratch) {
  if (w == 0) {
    std::fill(dr, dr + K, 0.0f);
    return 0.0f;
  }
  float* neg = scratch.data();
  float* y = neg + K;
  float* dact = y + K;
  float* e = dact + K;
  float* sg = e + K;
  std::copy(colmask, colmask + K, neg);
  neg[i] = 0.0f;
  const float m = row_max(r, neg, K, p.elu, p.alpha);
  activate(r, y, dact, K, p.elu, p.alpha);
  const float z = numerators(y, neg, e, K, m);
  float sums[3];
  weights(y, e, sg, K, z == 0 ? 1.0f : z, exp_f(m - y[i]), sums);
  const float a = sums[0] + kEps;
  const float g = sums[0] / -a + p.bpreg * sums[1];
  gradient(y, e, sg, dact, dr, K, p.bpreg, a, g, w);
  dr[i] = (w * (sums[2] / -a)) * dact[i];
  return w * (-std::log(a) + p.bpreg * sums[1]);
}

ffi::Error BprMax(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> R, ffi::Buffer<ffi::F32> rowmask,
                  ffi::Buffer<ffi::F32> colmask, bool elu, float alpha, float bpreg, ffi::ResultBuffer<ffi::F32> loss,
                  ffi::ResultBuffer<ffi::F32> dR) {
  const int64_t B = rowmask.element_count(), K = colmask.element_count();
  if (static_cast<int64_t>(R.element_count()) != B * K || K < B)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "bpr_max: R is not rowmask x colmask");
  std::vector<float> losses(B);
  const float *r = R.typed_data(), *rm = rowmask.typed_data(), *cm = colmask.typed_data();
  float* dr = dR->typed_data();
  const Params p{elu, alpha, bpreg};
  const int64_t parts = gru4rec::parts_for(pool, B);
  gru4rec::in_parts(pool, parts, [&](int64_t part) {
    std::vector<float> scratch(5 * K);
    for (int64_t i = part; i < B; i += parts)
      losses[i] = row_loss(r + i * K, cm, rm[i], i, K, p, dr + i * K, scratch);
  });
  float total = 0;  // in row order, whatever the number of threads
  for (float v : losses) total += v;
  *loss->typed_data() = total;
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(gru4rec_bpr_max, BprMax,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("elu")
                                  .Attr<float>("alpha")
                                  .Attr<float>("bpreg")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
