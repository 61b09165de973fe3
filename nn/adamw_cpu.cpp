#include "nn/adamw_cpu.h"

#include <immintrin.h>

#include <algorithm>

namespace pt::nn::detail {

namespace {

constexpr int64_t kChunk = 1 << 15;  // elements per work item: ~1 MB of traffic, many items per thread

// The scalar loop (tails, CPUs without AVX2). Each expression is one rounding, as written: this translation unit
// is built without FMA contraction of separate multiplies and adds (std::fma is explicit).
void scalar_range(const AdamWFusedTensor& t, int64_t begin, int64_t end, const AdamWCpuHyper& h) {
  for (int64_t k = begin; k < end; ++k) {
    if (t.keep && !t.keep[k]) {
      t.p[k] = 0.0f;
      t.m[k] = 0.0f;
      t.v[k] = 0.0f;
      continue;
    }
    adamw_f32_element(t.p[k], t.g[k], t.m[k], t.v[k], h, t);
  }
}

// Eight elements per step, the operations of adamw_f32_element in the same order.
__attribute__((target("avx2,fma"))) void avx2_range(const AdamWFusedTensor& t, int64_t begin, int64_t end,
                                                    const AdamWCpuHyper& h) {
  const __m256 decay = _mm256_set1_ps(t.decay), neg_step = _mm256_set1_ps(-t.step_size);
  const __m256 bc2 = _mm256_set1_ps(t.bc2_sqrt), w1 = _mm256_set1_ps(h.one_minus_beta1);
  const __m256 b2 = _mm256_set1_ps(h.beta2), w2 = _mm256_set1_ps(h.one_minus_beta2), eps = _mm256_set1_ps(h.eps);
  int64_t k = begin;
  for (; k + 8 <= end; k += 8) {
    const __m256 g = _mm256_loadu_ps(t.g + k);
    __m256 p = _mm256_mul_ps(_mm256_loadu_ps(t.p + k), decay);
    __m256 m = _mm256_loadu_ps(t.m + k);
    m = _mm256_fmadd_ps(w1, _mm256_sub_ps(g, m), m);
    __m256 v = _mm256_fmadd_ps(w2, _mm256_mul_ps(g, g), _mm256_mul_ps(_mm256_loadu_ps(t.v + k), b2));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), bc2), eps);
    p = _mm256_fmadd_ps(neg_step, _mm256_div_ps(m, denom), p);
    if (t.keep) {  // pruned lanes: AND with an all-zero lane gives exactly +0.0, whatever was computed
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.keep + k));
      const __m256 mask =
          _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_setzero_si256()));
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

bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

}  // namespace

void adamw_cpu_step(const std::vector<AdamWFusedTensor>& tensors, const AdamWCpuHyper& h, bool simd) {
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
  const bool avx2 = simd && cpu_has_avx2_fma();
  const int64_t count = int64_t(items.size());
#pragma omp parallel for schedule(static) if (total >= 4 * kChunk)
  for (int64_t i = 0; i < count; ++i) {
    const Item& it = items[size_t(i)];
    if (avx2) avx2_range(tensors[size_t(it.tensor)], it.begin, it.end, h);
    else scalar_range(tensors[size_t(it.tensor)], it.begin, it.end, h);
  }
}

}  // namespace pt::nn::detail
