// bench_kernel_lab: every registered variant of every kernel family (lab/lab_family.h), on each device it runs on,
// over its family's benchmark problems (the sizes the project runs: OPT-1.3B layers on CUDA, OPT-125M ones on the
// CPU), each row printed with its time, GB/s and TFLOP/s (from the variant's cost model) and its percentage of the
// device's roofline. A variant registered later appears here without a line of this file changing.
//
//   bench_kernel_lab                                   everything; JSON into kernel_lab.json
//   bench_kernel_lab --benchmark_filter=/cuda/ --benchmark_out=lab.json --benchmark_min_time=0.05
//   bench_kernel_lab --benchmark_filter='obs_sweep/' --peak-gbs=4800 --peak-tflops=67 --peak-bf16-tflops=990
//   bench_kernel_lab --with-reference                  the plain-loop oracles too (slow on the large problems)
//
// The roofline of each device is measured once at start (lab/roofline.h: a triad and a GEMM, about a second; a
// device no selected row runs on is skipped), or given by --peak-gbs (GB/s), --peak-tflops (f32 TFLOP/s) and
// --peak-bf16-tflops (tensor cores). The peaks are in the JSON's context. Rows are named
// family/variant/device/problem, so gpu_check's --benchmark_filter=/cuda/ selects the GPU rows. Each iteration
// restores the in-place arguments first (outside the timed region) and is timed alone: wall time on the CPU, CUDA
// events on the GPU. CUDA rows skip with a message when no GPU is usable.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "lab/lab_family.h"
#include "lab/roofline.h"
#include "tensor/ops.h"

namespace pt {
namespace {

struct Options {
  double peak_gbs = 0, peak_tflops = 0, peak_bf16_tflops = 0;
  bool with_reference = false;
};

Options g_options;
std::map<Device, lab::Peaks> g_peaks;
void set_peaks(Device d, const Options& o);

std::string row_name(const std::string& family, const std::string& variant, Device d, const kernels::Problem& p) {
  std::vector<std::string> parts = {family, variant, device_name(d), p.shape_class};
  for (const auto& [k, v] : p.dims) parts.push_back(k + "=" + std::to_string(v));
  if (!p.pattern.empty()) parts.push_back(p.pattern);
  parts.push_back(dtype_name(p.dtype));
  std::string name;
  for (const std::string& part : parts) name.append(name.empty() ? "" : "/").append(part);
  std::replace(name.begin(), name.end(), ' ', '_');
  return name;
}

void run_row(benchmark::State& state, const lab::LabFamily* lab, const std::string& variant, Device device,
             const kernels::Problem& p) {
  if (device == Device::cuda && !cuda_is_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  if (!g_peaks.count(device)) set_peaks(device, g_options);  // a row the start-up filter check did not foresee
  const lab::Args args = lab->make_args(p, 1234, device);
  std::vector<std::pair<Tensor, Tensor>> restore;  // in-place arguments and their first values
  for (const lab::Arg& a : args)
    if (a.role == lab::Role::inout && a.t.defined()) restore.emplace_back(a.t, a.t.clone());
  const auto reset = [&] {
    for (auto& [live, first] : restore) Tensor(live).copy_(first);
  };
  reset();
  const auto call = lab->timed_call(variant, p, args);
  call();  // warm-up (allocator, BLAS threads, cuBLAS heuristics, plans)
  double total = 0;
  for (auto _ : state) {
    reset();
    const double s = lab::time_once(device, [&] { call(); });
    state.SetIterationTime(s);
    total += s;
  }
  const double seconds = total / double(state.iterations());
  const kernels::Cost cost = lab->family().cost(variant, p);
  state.counters["GB/s"] = cost.bytes / seconds / 1e9;
  state.counters["TFLOP/s"] = cost.flops / seconds / 1e12;
  state.counters["roofline%"] = lab::roofline_percent(cost, seconds, device, g_peaks.at(device));
}

// The rows, registered from the registry; returns the devices they run on.
std::vector<Device> register_rows(const Options& o, const std::string& filter) {
  std::vector<Device> devices;
  const std::regex selected(filter.empty() || filter == "all" ? "." : filter);
  for (const lab::LabFamily* lab : lab::lab_families())
    for (const kernels::VariantInfo* v : lab->family().variants()) {
      if (v->name == "reference" && !o.with_reference) continue;
      for (Device d : v->devices)
        for (const kernels::Problem& p : lab->problems(lab::Purpose::bench, d)) {
          if (!v->takes(p)) continue;
          const std::string name = row_name(lab->family().name(), v->name, d, p);
          benchmark::RegisterBenchmark(name.c_str(), [=, variant = v->name](benchmark::State& st) {
            run_row(st, lab, variant, d, p);
          })->UseManualTime()->Unit(benchmark::kMillisecond);
          if (std::regex_search(name, selected) && std::find(devices.begin(), devices.end(), d) == devices.end())
            devices.push_back(d);
        }
    }
  return devices;
}

// Takes the lab's own flags out of argv (Google Benchmark rejects unknown ones).
Options take_options(int& argc, char** argv, std::string& filter, bool& has_out, bool& listing) {
  Options o;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) { return std::stod(a.substr(std::strlen(flag))); };
    if (a.rfind("--peak-gbs=", 0) == 0) o.peak_gbs = value("--peak-gbs=");
    else if (a.rfind("--peak-tflops=", 0) == 0) o.peak_tflops = value("--peak-tflops=");
    else if (a.rfind("--peak-bf16-tflops=", 0) == 0) o.peak_bf16_tflops = value("--peak-bf16-tflops=");
    else if (a == "--with-reference") o.with_reference = true;
    else {
      if (a.rfind("--benchmark_filter=", 0) == 0) filter = a.substr(19);
      if (a.rfind("--benchmark_out=", 0) == 0) has_out = true;
      if (a.rfind("--benchmark_list_tests", 0) == 0) listing = true;
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  return o;
}

void set_peaks(Device d, const Options& o) {
  if (d == Device::cuda && !cuda_is_available()) return;  // its rows skip
  lab::Peaks p;
  if (o.peak_gbs > 0 && o.peak_tflops > 0) {
    p = {o.peak_gbs * 1e9, o.peak_tflops * 1e12, (o.peak_bf16_tflops > 0 ? o.peak_bf16_tflops : o.peak_tflops) * 1e12,
         "given"};
  } else {
    p = lab::measure_peaks(d);
  }
  g_peaks[d] = p;
  const std::string key = std::string("peak_") + device_name(d);
  benchmark::AddCustomContext(key + "_GB/s", std::to_string(p.bytes_per_second / 1e9));
  benchmark::AddCustomContext(key + "_f32_TFLOP/s", std::to_string(p.flops_f32 / 1e12));
  benchmark::AddCustomContext(key + "_bf16_TFLOP/s", std::to_string(p.flops_bf16 / 1e12));
  benchmark::AddCustomContext(key + "_how", p.how);
  std::printf("roofline of %s: %.1f GB/s, %.2f TFLOP/s f32, %.2f TFLOP/s bf16 (%s)\n", device_name(d),
              p.bytes_per_second / 1e9, p.flops_f32 / 1e12, p.flops_bf16 / 1e12, p.how.c_str());
}

}  // namespace
}  // namespace pt

int main(int argc, char** argv) {
  std::string filter;
  bool has_out = false, listing = false;
  const pt::Options o = pt::g_options = pt::take_options(argc, argv, filter, has_out, listing);
  std::vector<char*> args(argv, argv + argc);
  std::string out = "--benchmark_out=kernel_lab.json", format = "--benchmark_out_format=json";
  if (!has_out) args.insert(args.end(), {out.data(), format.data()});
  int n = int(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  try {
    for (pt::Device d : pt::register_rows(o, filter))
      if (!listing) pt::set_peaks(d, o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!has_out && !listing) std::printf("wrote kernel_lab.json\n");
  return 0;
}
