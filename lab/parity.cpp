// Guarded placement of a variant's arguments and the comparison with the family's reference.
#include "lab/parity.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"
#if PT_CUDA
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::lab {

namespace {

uint8_t sentinel(int64_t i) { return uint8_t((i * 37 + 11) & 0xFF); }

// A block's bytes: sentinels around the payload; the payload 0xFF (NaN in every float dtype, 255 in a mask).
std::vector<uint8_t> guard_pattern(int64_t payload_bytes) {
  std::vector<uint8_t> bytes(size_t(2 * kGuardBytes + payload_bytes), 0xFF);
  for (int64_t i = 0; i < kGuardBytes; ++i) {
    bytes[size_t(i)] = sentinel(i);
    bytes[size_t(kGuardBytes + payload_bytes + i)] = sentinel(kGuardBytes + i);
  }
  return bytes;
}

// A contiguous tensor of `like`'s shape and dtype inside a fresh guarded block on `device`, poisoned.
std::pair<Tensor, Tensor> guarded_tensor(const Tensor& like, Device device) {
  const int64_t payload = int64_t(like.nbytes());
  const Tensor block = Tensor::from_vector(guard_pattern(payload), {2 * kGuardBytes + payload}).to(device);
  Strides strides(like.shape().size(), 1);
  for (int64_t d = like.dim() - 2; d >= 0; --d) strides[size_t(d)] = strides[size_t(d + 1)] * like.size(d + 1);
  const Tensor view(block.storage(), like.shape(), strides, kGuardBytes / int64_t(dtype_size(like.dtype())),
                    like.dtype());
  return {block, view};
}

void synchronize(Device device) {
#if PT_CUDA
  if (device == Device::cuda) cuda::synchronize();
#else
  (void)device;
#endif
}

// Compares `got` (any device) with `want` (CPU); appends failures; returns the relative error (floats).
double compare(const std::string& what, const Tensor& got, const Tensor& want, double tol,
               std::vector<std::string>& failures) {
  if (!got.defined() || got.shape() != want.shape()) {
    failures.push_back(what + ": shape " + (got.defined() ? shape_str(got.shape()) : "undefined") + ", reference " +
                       shape_str(want.shape()));
    return INFINITY;
  }
  const std::vector<double> a = got.to_vector<double>(), e = want.to_vector<double>();
  if (!is_floating(want.dtype()) || tol == 0.0) {
    int64_t differ = 0, first = -1;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == e[i] || (std::isnan(a[i]) && std::isnan(e[i])))) {
        if (first < 0) first = int64_t(i);
        ++differ;
      }
    if (differ > 0)
      failures.push_back(pt::detail::concat(what, ": ", differ, " of ", a.size(), " elements differ from the ",
                                            "reference (first at flat index ", first, ": ", a[size_t(first)], " vs ",
                                            e[size_t(first)], ")"));
    return 0.0;
  }
  int64_t nan_count = 0, first_nan = -1;
  double scale = 0.0, worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && !std::isnan(e[i])) {
      if (first_nan < 0) first_nan = int64_t(i);
      ++nan_count;
    }
    if (std::isfinite(e[i])) scale = std::max(scale, std::abs(e[i]));
  }
  if (nan_count > 0) {
    failures.push_back(pt::detail::concat(what, ": ", nan_count, " of ", a.size(), " elements are NaN where the ",
                                          "reference is not (first at flat index ", first_nan,
                                          "): unwritten or poisoned output"));
    return INFINITY;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(e[i])) continue;
    if (std::isinf(e[i])) {
      if (a[i] != e[i]) worst = INFINITY;
      continue;
    }
    worst = std::max(worst, std::abs(a[i] - e[i]) / std::max(scale, 1e-30));
  }
  if (!(worst <= tol)) failures.push_back(pt::detail::concat(what, ": max |got - reference| / max |reference| = ", worst,
                                                             " exceeds ", tol));
  return worst;
}

}  // namespace

std::string ParityResult::describe() const {
  std::string s;
  for (const auto& f : failures) s += (s.empty() ? "" : "; ") + f;
  return s.empty() ? "ok" : s;
}

GuardedArgs place_guarded(const Args& cpu, Device device) {
  GuardedArgs g;
  for (size_t i = 0; i < cpu.size(); ++i) {
    Arg a = cpu[i];
    if (a.t.defined()) {
      auto [block, view] = guarded_tensor(a.t, device);
      if (a.role != Role::output) Tensor(view).copy_(a.t.to(device));
      a.t = view;
      g.blocks.push_back(block);
      g.arg_of.push_back(i);
    }
    g.args.push_back(a);
  }
  return g;
}

std::vector<std::string> broken_guards(const GuardedArgs& g) {
  std::vector<std::string> names;
  for (size_t b = 0; b < g.blocks.size(); ++b) {
    const Tensor& block = g.blocks[b];
    const int64_t payload = block.numel() - 2 * kGuardBytes;
    const std::vector<uint8_t> head = block.narrow(0, 0, kGuardBytes).to_vector<uint8_t>();
    const std::vector<uint8_t> tail = block.narrow(0, kGuardBytes + payload, kGuardBytes).to_vector<uint8_t>();
    bool intact = true;
    for (int64_t i = 0; i < kGuardBytes; ++i)
      intact = intact && head[size_t(i)] == sentinel(i) && tail[size_t(i)] == sentinel(kGuardBytes + i);
    if (!intact) names.push_back(g.args[g.arg_of[b]].name);
  }
  return names;
}

double LabFamily::tolerance(const std::string& variant, const kernels::Problem& p, Device device) const {
  const kernels::VariantInfo* v = family().find(variant);
  if ((v && v->reduced_precision) || is_half(p.dtype)) return 1e-2;
  return 1e-4;
}

ParityResult check_parity(const LabFamily& lab, const std::string& variant, Device device, const kernels::Problem& p,
                          uint64_t seed) {
  ParityResult r;
  const Args inputs = lab.make_args(p, seed, Device::cpu);
  Args reference = inputs;  // plain CPU copies for the reference
  for (Arg& a : reference)
    if (a.t.defined()) a.t = a.t.clone();
  const Args ref_returned = lab.run(lab.family().reference(), p, reference);

  GuardedArgs g = place_guarded(inputs, device);
  Args returned;
  {
    const bool was = poison_allocations();
    set_poison_allocations(true);  // what the variant allocates starts as NaN too
    try {
      returned = lab.run(variant, p, g.args);
      synchronize(device);
    } catch (...) {
      set_poison_allocations(was);
      throw;
    }
    set_poison_allocations(was);
  }
  const double tol = lab.tolerance(variant, p, device);
  for (const std::string& name : broken_guards(g)) r.failures.push_back(name + ": a guard byte around it was overwritten");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Arg& a = g.args[i];
    if (!a.t.defined()) continue;
    if (a.role == Role::input) {
      const std::vector<std::string> before = r.failures;
      compare(a.name + " (input)", a.t, inputs[i].t, 0.0, r.failures);
      if (r.failures.size() != before.size()) r.failures.back() += " (the variant wrote to an input)";
    } else {
      r.worst_error = std::max(r.worst_error, compare(a.name, a.t, reference[i].t, tol, r.failures));
    }
  }
  if (returned.size() != ref_returned.size()) {
    r.failures.push_back(pt::detail::concat("returned ", returned.size(), " tensors, the reference ", ref_returned.size()));
    return r;
  }
  for (size_t i = 0; i < returned.size(); ++i)
    r.worst_error = std::max(r.worst_error, compare(returned[i].name, returned[i].t, ref_returned[i].t.to(Device::cpu),
                                                    tol, r.failures));
  return r;
}

}  // namespace pt::lab
