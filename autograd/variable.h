// Dynamic reverse-mode autograd. A Variable wraps a Tensor; ops on Variables that require grad record a
// Node holding their inputs and a backward function. backward() walks the graph in reverse topological
// order, accumulates gradients into leaves (and, transiently, into intermediates), then frees the graph.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace pt::autograd {

class Variable;
// Given d(loss)/d(output), return d(loss)/d(input_k) for each input (an undefined Tensor for inputs
// that need no gradient). Gradients of broadcast inputs must already be reduced to the input's shape.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node;

class Variable {
 public:
  Variable() = default;  // undefined
  explicit Variable(Tensor data, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const;
  Tensor& data();  // in-place updates by optimizers (the graph never sees them)
  const Tensor& grad() const;  // undefined until a backward reaches this variable
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient
  bool requires_grad() const;
  void set_requires_grad(bool r);
  bool is_leaf() const;  // created by the user, not by an op
  // A leaf's hook, called by backward() right after it accumulated this leaf's gradient: every use of the leaf
  // in that graph is done, so grad() is final for the backward (data-parallel training starts the all-reduce of
  // a gradient bucket from it while the backward goes on). One per leaf; an empty function removes it.
  void set_grad_ready_hook(std::function<void()> hook);
  const std::string& name() const;
  void set_name(const std::string& n);

  // Shortcuts to the data.
  const Shape& shape() const { return data().shape(); }
  int64_t dim() const { return data().dim(); }
  int64_t size(int64_t d) const { return data().size(d); }
  DType dtype() const { return data().dtype(); }
  Device device() const { return data().device(); }

  // Backpropagate from this variable. Without an explicit grad it must have one element (seed 1).
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false);

  // Record the result of an op. When grad mode is on and any input requires grad, the result gets a
  // Node with `inputs` and `fn`; otherwise it is a plain constant.
  static Variable from_op(Tensor result, std::vector<Variable> inputs, BackwardFn fn, const char* op_name);

  const std::shared_ptr<Node>& node() const;
  bool same(const Variable& o) const { return impl_ == o.impl_; }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  friend struct Node;
  friend void run_backward(const Variable&, const Tensor&, bool);
};

struct Node {
  std::vector<Variable> inputs;  // undefined where an input needed no gradient (constants are not kept)
  BackwardFn fn;
  const char* op_name = "";
  bool released = false;  // inputs and fn were freed by a backward without retain_graph
};

// Gradient recording switch (thread-local). NoGradGuard turns it off for a scope (evaluation, optimizer
// updates, pruning).
bool grad_enabled();
void set_grad_enabled(bool enabled);
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool prev_;
};

}  // namespace pt::autograd
