// Kernel families and their variants: the one registry mechanism every kernel of the project uses.
//
// A family is one function computed several ways (the OBS sweep, mask selection, the Hessian update, masked
// AdamW, the sparse linear forward, softmax …). Each way is a *variant*, registered once with
//   - its name and the devices it runs on,
//   - what it supports: the input dtypes it takes, and a predicate over the lab's problems (patterns, shapes),
//   - its cost model: the bytes it moves and the FLOPs it does for a problem (else the family's model),
//   - its implementation, a function of the family's signature Fn.
// From that one registration the variant is checked against the family's reference and benchmarked against the
// roofline (lab/: every registered variant, every shape class), and it can be chosen at run time by name.
//
// Choosing at run time. Each family has a *selection*: a variant name, or none, meaning the run-wide shorthand
// (`[run] kernels = fused|unfused`): the first variant of the family's fused (or unfused) preference list that
// runs on the device. Call sites ask the family for the selection (get("", device)) or name a variant
// explicitly (tests, benchmarks). select() and set_shorthand() are process-wide, like set_allow_tf32():
// apps set them once at start; tests scope them with ScopedSelection.
//
// Registration is explicit, never a static object's side effect (the project links static libraries, whose
// unreferenced objects the linker drops, and static initialisation order is unspecified): each family is a
// function-local static built on first use by a registration function in the family's folder, which adds every
// variant with one line.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"

namespace pt::kernels {

// One problem a family's variants run on: named sizes ("rows", "cols", …), a sparsity pattern where the family
// has one ("unstructured 0.5", "2:4"; "" otherwise) and the input dtype. The lab's shape classes are problems;
// a variant's accepts() and cost() read them.
struct Problem {
  std::string shape_class{};  // "odd", "square", "opt-1.3b fc1" …
  std::vector<std::pair<std::string, int64_t>> dims{};
  std::string pattern{};
  DType dtype = DType::f32;

  int64_t dim(const std::string& name) const;  // throws when the problem has no such size
  std::string label() const;                   // "odd rows=37 cols=33 2:4 f32"
};

// What one run of a variant costs: the bytes it must move to and from memory (every input read once, every
// output written once) and the floating-point operations it does. The roofline time of a run is
// max(bytes / peak bandwidth, flops / peak FLOP/s); tensor_cores picks the bf16 tensor-core peak.
struct Cost {
  double bytes = 0;
  double flops = 0;
  bool tensor_cores = false;
};
using CostModel = std::function<Cost(const Problem&)>;

// Registrations name the members they set (designated initializers); every member has a default.
struct VariantInfo {
  std::string name{};
  std::vector<Device> devices{};
  std::vector<DType> dtypes{};  // input dtypes it takes
  std::string summary{};        // one line: how it computes the family's function
  std::string supports{};       // one line for people: patterns and shapes it takes ("" = all of the family's)
  std::function<bool(const Problem&)> accepts{};  // null = every problem in one of its dtypes
  CostModel cost{};                               // null = the family's cost model
  bool reduced_precision = false;  // computes in bf16/f16 on f32 inputs: checked with the bf16 tolerance

  bool runs_on(Device d) const;
  bool takes(const Problem& p) const;  // its dtype, and accepts()
};

class FamilyBase {
 public:
  struct Spec {
    std::string name{};       // "obs_sweep": the [kernels] key
    std::string summary{};    // one line: the function every variant computes
    std::string reference{};  // the variant the others are checked against (runs on the CPU)
    std::vector<std::string> fused_order{}, unfused_order{};  // the shorthand: the first that runs on the device
    CostModel cost{};         // bytes and FLOPs of a problem
  };
  explicit FamilyBase(Spec spec) : spec_(std::move(spec)) {}
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return spec_.name; }
  const std::string& summary() const { return spec_.summary; }
  const std::string& reference() const { return spec_.reference; }
  std::vector<const VariantInfo*> variants() const;  // in registration order
  const VariantInfo* find(const std::string& variant) const;  // null when not registered
  std::vector<std::string> names() const;
  std::vector<std::string> names_on(Device d) const;
  Cost cost(const std::string& variant, const Problem& p) const;

  // "" when `variant` is registered and runs on `device`; otherwise one line naming the family, the variant and
  // what is allowed (the registered variants, or those that run on the device).
  std::string why_not(const std::string& variant, Device device) const;
  // The variant the shorthand ("fused" | "unfused") means on `device`.
  std::string shorthand_variant(const std::string& shorthand, Device device) const;
  // The variant a call site that names none runs on `device`: the selection, else the shorthand's.
  std::string resolve(Device device) const;

  // Process-wide selection ("" = follow the shorthand); an unregistered name throws why_not's message.
  void select(const std::string& variant);
  const std::string& selected() const { return selected_; }

 protected:
  void add_info(VariantInfo info);  // throws on a duplicate name or a variant without devices
  size_t index_of(const std::string& variant, Device device) const;  // checked: throws why_not's message

 private:
  std::string unknown_variant(const std::string& variant) const;  // "... has no variant 'x' (registered: ...)"

  Spec spec_;
  std::vector<std::unique_ptr<VariantInfo>> infos_;
  std::string selected_;
};

// A family whose variants have the signature Fn, e.g. Family<void(const ObsSweepArgs&)>.
template <class Fn>
class Family final : public FamilyBase {
 public:
  using Impl = std::function<Fn>;
  struct Variant {
    VariantInfo info;
    Impl run;
  };
  using FamilyBase::FamilyBase;

  void add(Variant v) {
    PT_CHECK(bool(v.run), "kernel family ", name(), ": variant '", v.info.name, "' has no implementation");
    add_info(std::move(v.info));
    impls_.push_back(std::move(v.run));
  }
  // The implementation of `variant` ("" = resolve(device)) for `device`; throws why_not's message.
  const Impl& get(const std::string& variant, Device device) const {
    return impls_[index_of(variant.empty() ? resolve(device) : variant, device)];
  }

 private:
  std::vector<Impl> impls_;
};

// The run-wide shorthand, "fused" (the default) or "unfused"; anything else throws.
void set_shorthand(const std::string& shorthand);
const std::string& shorthand();

// Selects variants for a scope and restores the previous selections (and shorthand) when it ends.
class ScopedSelection {
 public:
  ScopedSelection(FamilyBase& family, const std::string& variant) { add(family, variant); }
  ScopedSelection() = default;
  ScopedSelection& add(FamilyBase& family, const std::string& variant);
  ScopedSelection& shorthand(const std::string& shorthand);
  ~ScopedSelection();
  ScopedSelection(const ScopedSelection&) = delete;
  ScopedSelection& operator=(const ScopedSelection&) = delete;

 private:
  std::vector<std::pair<FamilyBase*, std::string>> saved_;
  std::string saved_shorthand_;
};

// "a, b, c" (for messages).
std::string join(const std::vector<std::string>& names);

}  // namespace pt::kernels
