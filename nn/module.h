// Module: a node in a tree of named parameters (autograd Variables), buffers (plain Tensors such as pruning
// masks) and child modules. Names are dotted paths built from registration names, in registration order, so
// a model that registers its pieces under Hugging Face's names has a state dict that maps one to one onto an
// HF checkpoint ("model.decoder.layers.0.fc1.weight").
//
// A module registers pointers to its own members, so modules are neither copyable nor movable: hold them by
// value inside their parent or by unique_ptr. There are no global registries.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace pt::nn {

using autograd::Variable;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // Dotted names, depth-first in registration order. Buffers that are undefined (an absent optional mask)
  // are left out.
  std::vector<std::pair<std::string, Variable*>> named_parameters() const;
  std::vector<Variable*> parameters() const;
  std::vector<std::pair<std::string, Tensor*>> named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_modules() const;  // children and below ("" = not self)
  int64_t num_parameters() const;  // total element count

  // Training mode switches dropout on; it applies to the whole subtree.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves parameters (and their gradients) and buffers in place. to(DType) converts only floating tensors
  // (masks and index buffers keep their dtype).
  void to(Device device);
  void to(DType dtype);
  void zero_grad();  // drops every parameter's gradient

  // name -> tensor sharing storage with the module (parameters, then buffers).
  std::map<std::string, Tensor> state_dict() const;
  // Copies each tensor into the matching parameter/buffer (converting dtype and device). strict: every
  // module tensor must be present and no extra names may appear. A registered-but-undefined buffer (an
  // optional mask) is created from the incoming tensor on the device of its module's parameters.
  void load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict = true);

 protected:
  // Register members under `name` (no dots; unique per module). Pointers must outlive the module: they point
  // at the module's own members.
  void register_parameter(const std::string& name, Variable* parameter);
  // Removes a parameter registered earlier (an adapter being detached); throws when there is none.
  void unregister_parameter(const std::string& name);
  void register_buffer(const std::string& name, Tensor* buffer);
  // Child names may contain dots ("layers.0"), which simply become part of the path.
  void register_module(const std::string& name, Module* child);

 private:
  struct BufferSlot {
    std::string name;
    Module* owner;
    Tensor* tensor;
  };
  void check_new_name(const std::string& name, bool allow_dots) const;
  void collect_buffers(const std::string& prefix, std::vector<BufferSlot>& out, bool include_undefined) const;

  std::vector<std::pair<std::string, Variable*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace pt::nn
