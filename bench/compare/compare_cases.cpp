// compare_cases: the project's side of `make compare`. Reads one JSON request per line on stdin and answers one
// JSON line on stdout, the protocol of bench/reference/worker.py (see its docstring):
//   hello | setup {case, params} | run {iters} | teardown | quit
// run times `iters` calls of the case with a steady clock (wall) and CLOCK_PROCESS_CPUTIME_ID (CPU seconds of
// every thread); on CUDA the loop is synchronised before and after and CUDA events give gpu_s. A failure is
// answered {"ok": false, "error": ...}, which the driver shows as a failed row.
#include <omp.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "bench/compare/compare_case.h"
#include "tensor/error.h"
#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/caching_allocator.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::comparison {

int64_t param_int(const json& p, const char* key) {
  PT_CHECK(p.contains(key) && p.at(key).is_number_integer(), "compare case: parameter '", key,
           "' is missing or not an integer in ", p.dump());
  return p.at(key).get<int64_t>();
}

DType param_dtype(const json& p, DType fallback) {
  return p.contains("dtype") ? parse_dtype(p.at("dtype").get<std::string>()) : fallback;
}

namespace {

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void synchronize(Device dev) {
#if PT_CUDA
  if (dev == Device::cuda) PT_CUDA_CHECK(cudaDeviceSynchronize());
#else
  (void)dev;
#endif
}

json timed_loop(CompareCase& c, int64_t iters, Device dev) {
  synchronize(dev);
#if PT_CUDA
  cudaEvent_t start{}, stop{};
  if (dev == Device::cuda) {
    PT_CUDA_CHECK(cudaEventCreate(&start));
    PT_CUDA_CHECK(cudaEventCreate(&stop));
    PT_CUDA_CHECK(cudaEventRecord(start, cuda::current_stream()));
  }
#endif
  const double cpu0 = process_cpu_seconds();
  const auto wall0 = std::chrono::steady_clock::now();
  json last;
  for (int64_t i = 0; i < iters; ++i) last = c.run();
#if PT_CUDA
  if (dev == Device::cuda) PT_CUDA_CHECK(cudaEventRecord(stop, cuda::current_stream()));
#endif
  synchronize(dev);
  json out;
  out["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  out["cpu_s"] = process_cpu_seconds() - cpu0;
#if PT_CUDA
  if (dev == Device::cuda) {
    float ms = 0;
    PT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    out["gpu_s"] = double(ms) / 1e3;
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
#endif
  out["check"] = c.check(last);
  out["iters"] = iters;
  return out;
}

int serve(Device dev, int threads) {
  CaseRegistry registry;
  add_opt_cases(registry);
  add_prune_cases(registry);
  add_kernel_cases(registry);
  std::unique_ptr<CompareCase> current;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json reply;
    try {
      const json req = json::parse(line);
      const std::string op = req.value("op", "");
      if (op == "quit") return 0;
      if (op == "hello") {
        reply = {{"side", "project"}, {"threads", threads}, {"device", device_name(dev)}};
#if PT_CUDA
        if (dev == Device::cuda) {
          cudaDeviceProp prop{};
          PT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
          reply["device_name"] = prop.name;
        }
#endif
      } else if (op == "setup") {
        const std::string kind = req.at("case").get<std::string>();
        auto it = registry.find(kind);
        PT_CHECK(it != registry.end(), "compare_cases: unknown case kind '", kind, "'");
        current.reset();
#if PT_CUDA
        if (dev == Device::cuda) cuda::empty_cache();
#endif
        current = it->second(req.value("params", json::object()), dev);
        current->run();  // warm-up: allocator pools, BLAS buffers, lazy state
        synchronize(dev);
        reply["info"] = current->info;
      } else if (op == "run") {
        PT_CHECK(current != nullptr, "compare_cases: run before a successful setup");
        reply = timed_loop(*current, req.value("iters", int64_t(1)), dev);
      } else if (op == "teardown") {
        current.reset();
        reply = json::object();
      } else {
        PT_FAIL("compare_cases: unknown op '", op, "'");
      }
      reply["ok"] = true;
    } catch (const std::exception& e) {
      if (line.find("\"setup\"") != std::string::npos) current.reset();
      reply = {{"ok", false}, {"error", e.what()}};
    }
    std::cout << reply.dump() << std::endl;
  }
  return 0;
}

}  // namespace
}  // namespace pt::comparison

int main(int argc, char** argv) {
  std::string device = "cpu";
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) device = argv[++i];
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: compare_cases [--device cpu|cuda] [--threads N]  (JSON requests on stdin; "
                           "run by scripts/compare.py)\n");
      return 2;
    }
  }
  try {
    const pt::Device dev = pt::parse_device(device);
    if (threads > 0) omp_set_num_threads(threads);  // BLAS too: the build's OpenBLAS runs on OpenMP's threads
    PT_CHECK(dev != pt::Device::cuda || pt::cuda_is_available(), "compare_cases: --device cuda but no usable GPU");
    return pt::comparison::serve(dev, threads > 0 ? threads : omp_get_max_threads());
  } catch (const std::exception& e) {
    std::cout << nlohmann::json{{"ok", false}, {"error", e.what()}}.dump() << std::endl;
    return 1;
  }
}
