// The roofline of a device, measured by the lab itself (or given): the memory bandwidth a streaming kernel reaches
// and the FLOP/s a large matrix product reaches, in f32 and on bf16 tensor cores. A run that moves B bytes and does
// F FLOPs cannot take less than max(B / bandwidth, F / FLOP/s): its percentage of the roofline is that time over
// the time it took.
#pragma once
#include <functional>
#include <string>

#include "tensor/kernel_registry.h"

namespace pt::lab {

struct Peaks {
  double bytes_per_second = 0;
  double flops_f32 = 0;   // FLOP/s of an f32 GEMM (TF32 off)
  double flops_bf16 = 0;  // FLOP/s of a bf16 GEMM with f32 accumulation (tensor cores); on the CPU the f32 one
  std::string how;        // "measured: triad of 3 x 128 MB, sgemm 2048^3" or "given"
};

// Streams a triad (a = b + s·c, 3 × 128 MB on the CPU, 3 × 1 GB on CUDA) and multiplies square matrices (2048 on
// the CPU, 8192 on CUDA), best of a few runs each. Takes about a second.
Peaks measure_peaks(Device device);

// Seconds one call of fn takes on `device`: wall time on the CPU, CUDA events on the current stream.
double time_once(Device device, const std::function<void()>& fn);

// 100 · max(bytes / bandwidth, flops / FLOP/s) / seconds: how close a run came to what the device allows.
double roofline_percent(const kernels::Cost& cost, double seconds, Device device, const Peaks& peaks);

}  // namespace pt::lab
