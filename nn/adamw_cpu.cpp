#include "nn/adamw_cpu.h"

#include <immintrin.h>

#include <algorithm>

namespace pt::nn::detail {

namespace {

constexpr int64_t kChunk = 1 << 15;  // elements per work item: ~1 MB of traffic, many items per thread

void scalar_range(const AdamWFusedTensor& t, int64_t begin, int64_t end, const AdamWCpuHyper& h) {
  for (int64_t k = begin; k < end; ++k) {
    if (t.keep && !t.keep[k]) {
      t.p[k] = 0.0f;
      t.m[k] = 0.0f;
      t.v[k] = 0.0f;
      continue;
    }
    adamw_reference_element(t.p[k], t.g[k], t.m[k], t.v[k], h, t.decay, t.step_size, t.bc2_sqrt);
  }
}

// Four elements in double lanes, the same operations in the same order as adamw_reference_element (no FMA: the
// target has none, so nothing is contracted). Returns the new p, m, v as floats.
struct Lanes4 {
  __m128 p, m, v;
};
__attribute__((target("avx2"))) inline Lanes4 step4(__m128 pf, __m128 gf, __m128 mf, __m128 vf, __m256d decay,
                                                    __m256d step, __m256d bc2, __m256d w1, __m256d b2, __m256d w2,
                                                    __m256d eps) {
  const __m256d g = _mm256_cvtps_pd(gf), m = _mm256_cvtps_pd(mf);
  const __m128 p1 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(pf), decay));
  const __m128 m1 = _mm256_cvtpd_ps(_mm256_add_pd(m, _mm256_mul_pd(w1, _mm256_sub_pd(g, m))));
  const __m256d vb = _mm256_cvtps_pd(_mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(vf), b2)));
  const __m128 v1 = _mm256_cvtpd_ps(_mm256_add_pd(vb, _mm256_mul_pd(_mm256_mul_pd(w2, g), g)));
  const __m256d denom = _mm256_add_pd(_mm256_div_pd(_mm256_sqrt_pd(_mm256_cvtps_pd(v1)), bc2), eps);
  const __m256d upd = _mm256_mul_pd(step, _mm256_div_pd(_mm256_cvtps_pd(m1), denom));
  return {_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_cvtps_pd(p1), upd)), m1, v1};
}

__attribute__((target("avx2"))) void avx2_range(const AdamWFusedTensor& t, int64_t begin, int64_t end,
                                                const AdamWCpuHyper& h) {
  const __m256d decay = _mm256_set1_pd(t.decay), step = _mm256_set1_pd(t.step_size), bc2 = _mm256_set1_pd(t.bc2_sqrt);
  const __m256d w1 = _mm256_set1_pd(h.one_minus_beta1), b2 = _mm256_set1_pd(h.beta2);
  const __m256d w2 = _mm256_set1_pd(h.one_minus_beta2), eps = _mm256_set1_pd(h.eps);
  int64_t k = begin;
  for (; k + 8 <= end; k += 8) {
    const __m256 pf = _mm256_loadu_ps(t.p + k), gf = _mm256_loadu_ps(t.g + k);
    const __m256 mf = _mm256_loadu_ps(t.m + k), vf = _mm256_loadu_ps(t.v + k);
    const Lanes4 lo = step4(_mm256_castps256_ps128(pf), _mm256_castps256_ps128(gf), _mm256_castps256_ps128(mf),
                            _mm256_castps256_ps128(vf), decay, step, bc2, w1, b2, w2, eps);
    const Lanes4 hi = step4(_mm256_extractf128_ps(pf, 1), _mm256_extractf128_ps(gf, 1), _mm256_extractf128_ps(mf, 1),
                            _mm256_extractf128_ps(vf, 1), decay, step, bc2, w1, b2, w2, eps);
    __m256 p = _mm256_set_m128(hi.p, lo.p), m = _mm256_set_m128(hi.m, lo.m), v = _mm256_set_m128(hi.v, lo.v);
    if (t.keep) {  // pruned lanes: AND with an all-zero lane gives exactly +0.0, whatever was computed
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.keep + k));
      const __m256i kept = _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_setzero_si256());
      const __m256 mask = _mm256_castsi256_ps(kept);
      p = _mm256_and_ps(p, mask);
      m = _mm256_and_ps(m, mask);
      v = _mm256_and_ps(v, mask);
    }
    _mm256_storeu_ps(t.p + k, p);
    _mm256_storeu_ps(t.m + k, m);
    _mm256_storeu_ps(t.v + k, v);
  }
  scalar_range(t, k, end, h);
}

bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

}  // namespace

void adamw_cpu_step(const std::vector<AdamWFusedTensor>& tensors, const AdamWCpuHyper& h) {
  struct Item {
    int32_t tensor;
    int64_t begin, end;
  };
  std::vector<Item> items;
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    for (int64_t b = 0; b < tensors[i].n; b += kChunk) items.push_back({int32_t(i), b, std::min(tensors[i].n, b + kChunk)});
    total += tensors[i].n;
  }
  const bool avx2 = cpu_has_avx2();
  const int64_t count = int64_t(items.size());
#pragma omp parallel for schedule(static) if (total >= 4 * kChunk)
  for (int64_t i = 0; i < count; ++i) {
    const Item& it = items[size_t(i)];
    if (avx2) avx2_range(tensors[size_t(it.tensor)], it.begin, it.end, h);
    else scalar_range(tensors[size_t(it.tensor)], it.begin, it.end, h);
  }
}

}  // namespace pt::nn::detail
