// The BLAS the binaries load: OpenBLAS's OpenMP build (CMakeLists.txt explains why), with its BLAS, LAPACK and
// core all from one build, whatever the system's alternatives point at; and a product computed inside an OpenMP
// region (one head of the causal attention per thread) leaves that region's thread count alone.
#include <cblas.h>
#include <link.h>
#include <omp.h>

#include <map>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

// soname-like file name (libopenblas.so.0, liblapack.so.3, ...) -> directory it was loaded from.
std::map<std::string, std::string> loaded_libraries() {
  std::map<std::string, std::string> libs;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const std::string path = info->dlpi_name ? info->dlpi_name : "";
        const size_t slash = path.rfind('/');
        if (slash != std::string::npos)
          (*static_cast<std::map<std::string, std::string>*>(out))[path.substr(slash + 1)] = path.substr(0, slash);
        return 0;
      },
      &libs);
  return libs;
}

TEST(BlasRuntime, OpenBlasIsTheOpenMpBuild) {
  EXPECT_EQ(openblas_get_parallel(), 2) << "0: sequential, 1: pthreads, 2: OpenMP; config: " << openblas_get_config();
}

TEST(BlasRuntime, BlasLapackAndCoreComeFromOneBuild) {
  const auto libs = loaded_libraries();
  ASSERT_TRUE(libs.count("libopenblas.so.0")) << "libopenblas.so.0 is not loaded";
  for (const char* name : {"liblapack.so.3", "libblas.so.3"}) {
    auto it = libs.find(name);
    if (it == libs.end()) continue;  // not loaded at all: nothing to mix up
    EXPECT_EQ(it->second, libs.at("libopenblas.so.0")) << name << " is loaded from another OpenBLAS build";
  }
}

TEST(BlasRuntime, ProductsInsideAParallelRegionKeepItsThreads) {
  const int threads = omp_get_max_threads();
  const int n = 64;
  Tensor a = test::random_tensor({n, n}, 1), b = test::random_tensor({n, n}, 2);
  const std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
  std::vector<float> outside(size_t(n * n));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, va.data(), n, vb.data(), n, 0.0f,
              outside.data(), n);
  std::vector<std::vector<float>> inside(size_t(threads), std::vector<float>(size_t(n * n)));
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
    std::vector<float>& c = inside[size_t(omp_get_thread_num())];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, va.data(), n, vb.data(), n, 0.0f,
                c.data(), n);
  }
  EXPECT_EQ(team, threads);
  EXPECT_EQ(omp_get_max_threads(), threads) << "a BLAS call changed OpenMP's thread count";
  for (int t = 0; t < team; ++t) EXPECT_EQ(inside[size_t(t)], outside) << "thread " << t;
  // and against a naive product, so a BLAS that wrote nothing cannot pass
  for (int i = 0; i < n; i += 7)
    for (int j = 0; j < n; j += 5) {
      double s = 0;
      for (int k = 0; k < n; ++k) s += double(va[size_t(i * n + k)]) * vb[size_t(k * n + j)];
      EXPECT_NEAR(outside[size_t(i * n + j)], s, 1e-4 * (1 + std::abs(s)));
    }
}

}  // namespace
}  // namespace pt
