// Variable storage, grad mode, and the backward engine: an iterative DFS topological sort from the root,
// then one reverse walk that calls each Node's backward function and accumulates into its inputs.
#include "autograd/variable.h"

#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "tensor/ops.h"

namespace pt::autograd {

struct Variable::Impl {
  Tensor data;
  Tensor grad;  // leaves only; accumulates across backward calls until zero_grad()
  bool requires_grad = false;
  std::shared_ptr<Node> node;  // null for leaves
  std::string name;
  std::function<void()> grad_ready_hook;  // leaves only (set_grad_ready_hook)

  // Dropping the last handle on a long chain would otherwise recurse once per node (Impl -> Node ->
  // inputs -> Impl ...) and can overflow the stack; unlink the chain iteratively instead.
  ~Impl() {
    if (!node || node.use_count() != 1) return;
    std::vector<Variable> pending = std::move(node->inputs);
    while (!pending.empty()) {
      Variable v = std::move(pending.back());
      pending.pop_back();
      if (v.impl_ && v.impl_.use_count() == 1 && v.impl_->node && v.impl_->node.use_count() == 1) {
        auto& more = v.impl_->node->inputs;
        for (auto& in : more) pending.push_back(std::move(in));
        more.clear();
      }
    }  // each v dies here with an empty input list: no recursion
  }
};

// ---- grad mode ----------------------------------------------------------------------------------

namespace {
thread_local bool t_grad_enabled = true;
}
bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }

// ---- Variable -----------------------------------------------------------------------------------

Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<Impl>()) {
  PT_CHECK(data.defined(), "Variable: cannot wrap an undefined tensor");
  PT_CHECK(!requires_grad || is_floating(data.dtype()), "Variable: requires_grad needs a floating dtype, got ",
           data.describe());
  impl_->data = std::move(data);
  impl_->requires_grad = requires_grad;
}

namespace {
void check_defined(bool defined, const char* what) {
  PT_CHECK(defined, "Variable::", what, ": the variable is undefined (default-constructed)");
}
std::string label(const std::string& name) { return name.empty() ? std::string("<unnamed>") : "'" + name + "'"; }
}  // namespace

const Tensor& Variable::data() const { check_defined(defined(), "data"); return impl_->data; }
Tensor& Variable::data() { check_defined(defined(), "data"); return impl_->data; }
const Tensor& Variable::grad() const { check_defined(defined(), "grad"); return impl_->grad; }
void Variable::zero_grad() { check_defined(defined(), "zero_grad"); impl_->grad = Tensor(); }
bool Variable::requires_grad() const { check_defined(defined(), "requires_grad"); return impl_->requires_grad; }
bool Variable::is_leaf() const { check_defined(defined(), "is_leaf"); return impl_->node == nullptr; }
const std::string& Variable::name() const { check_defined(defined(), "name"); return impl_->name; }
void Variable::set_name(const std::string& n) { check_defined(defined(), "set_name"); impl_->name = n; }
const std::shared_ptr<Node>& Variable::node() const { check_defined(defined(), "node"); return impl_->node; }

void Variable::set_grad(const Tensor& g) {
  check_defined(defined(), "set_grad");
  PT_CHECK(!g.defined() || g.shape() == data().shape(), "Variable::set_grad: gradient ", g.describe(),
           " does not match the data ", data().describe(), " of ", label(name()));
  impl_->grad = g;
}

void Variable::set_grad_ready_hook(std::function<void()> hook) {
  check_defined(defined(), "set_grad_ready_hook");
  PT_CHECK(!hook || is_leaf(), "Variable::set_grad_ready_hook: ", label(name()),
           " was produced by an op; only leaves have one");
  impl_->grad_ready_hook = std::move(hook);
}

void Variable::set_requires_grad(bool r) {
  check_defined(defined(), "set_requires_grad");
  PT_CHECK(is_leaf(), "Variable::set_requires_grad: ", label(name()),
           " was produced by an op; only leaves can change requires_grad");
  PT_CHECK(!r || is_floating(data().dtype()), "Variable::set_requires_grad: ", data().describe(),
           " is not a floating dtype");
  impl_->requires_grad = r;
}

Variable Variable::from_op(Tensor result, std::vector<Variable> inputs, BackwardFn fn, const char* op_name) {
  Variable out(std::move(result), false);
  if (!grad_enabled()) return out;
  bool any = false;
  for (const Variable& in : inputs) any = any || (in.defined() && in.requires_grad());
  if (!any) return out;
  // Inputs that need no gradient are not kept (a constant mask or batch is not held alive by the
  // graph); the slot stays, so the k-th gradient still lines up with the k-th input.
  for (Variable& in : inputs)
    if (in.defined() && !in.requires_grad()) in = Variable();
  auto node = std::make_shared<Node>();
  node->inputs = std::move(inputs);
  node->fn = std::move(fn);
  node->op_name = op_name;
  out.impl_->node = std::move(node);
  out.impl_->requires_grad = true;
  return out;
}

void Variable::backward(const Tensor& grad_output, bool retain_graph) {
  run_backward(*this, grad_output, retain_graph);
}

// ---- the engine ---------------------------------------------------------------------------------

namespace {
bool needs_grad(const Variable& v) { return v.defined() && v.requires_grad(); }

[[noreturn]] void throw_freed(const Node& n) {
  PT_FAIL("backward: the graph through '", n.op_name,
          "' was already freed by an earlier backward; pass retain_graph=true to the first backward "
          "to backpropagate through it again");
}
}  // namespace

void run_backward(const Variable& root, const Tensor& grad_output, bool retain_graph) {
  using ImplPtr = std::shared_ptr<Variable::Impl>;
  check_defined(root.defined(), "backward");
  PT_CHECK(root.requires_grad(), "backward: ", label(root.name()),
           " does not require grad (no input needs a gradient, or it was computed under NoGradGuard)");

  // Seed: d(root)/d(root) = 1 for a single-element root, else the caller's gradient.
  const Tensor& data = root.data();
  Tensor seed;
  if (grad_output.defined()) {
    PT_CHECK(grad_output.shape() == data.shape(), "backward: grad_output ", grad_output.describe(),
             " does not match the output ", data.describe());
    PT_CHECK(grad_output.device() == data.device() && grad_output.dtype() == data.dtype(),
             "backward: grad_output ", grad_output.describe(), " must have the output's dtype and device (",
             data.describe(), ")");
    seed = grad_output;
  } else {
    PT_CHECK(data.numel() == 1, "backward: the output ", data.describe(),
             " is not a scalar; pass grad_output (a tensor of its shape) or reduce it first (sum_all/mean_all)");
    seed = Tensor::ones(data.shape(), data.dtype(), data.device());
  }

  // Topological order by iterative DFS (post-order: inputs before the ops that consume them). Holding
  // shared_ptrs keeps every visited variable alive while the graph is released below.
  std::vector<ImplPtr> order;
  std::unordered_set<const Variable::Impl*> visited{root.impl_.get()};
  struct Frame { ImplPtr v; size_t next; };
  std::vector<Frame> stack{{root.impl_, 0}};
  while (!stack.empty()) {
    Node* n = stack.back().v->node.get();
    if (n && n->released) throw_freed(*n);
    if (n && stack.back().next < n->inputs.size()) {
      const Variable& in = n->inputs[stack.back().next++];
      if (needs_grad(in) && visited.insert(in.impl_.get()).second) stack.push_back({in.impl_, 0});
    } else {
      order.push_back(std::move(stack.back().v));
      stack.pop_back();
    }
  }

  // Reverse walk. By the time a variable is reached every consumer has run, so its gradient is complete.
  std::unordered_map<const Variable::Impl*, Tensor> grads{{root.impl_.get(), seed}};
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Variable::Impl& v = **it;
    auto found = grads.find(&v);
    if (found == grads.end()) continue;  // no path carried a gradient here
    Tensor g = std::move(found->second);
    grads.erase(found);  // intermediate gradients are freed as soon as they are used
    if (!v.node) {
      // Leaf: keep its own copy (a gradient may alias another leaf's, e.g. both sides of an add).
      if (!v.grad.defined()) v.grad = g.clone();
      else pt::binary_(v.grad, v.grad, g, BinaryOp::add);
      if (v.grad_ready_hook) v.grad_ready_hook();
      continue;
    }
    Node& n = *v.node;
    std::vector<Tensor> in_grads = n.fn(g);
    PT_CHECK(in_grads.size() == n.inputs.size(), "backward of '", n.op_name, "' returned ", in_grads.size(),
             " gradients for ", n.inputs.size(), " inputs");
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const Variable& in = n.inputs[k];
      if (!needs_grad(in) || !in_grads[k].defined()) continue;
      const Tensor& gk = in_grads[k];
      const Tensor& xk = in.data();
      PT_CHECK(gk.shape() == xk.shape() && gk.dtype() == xk.dtype() && gk.device() == xk.device(),
               "backward of '", n.op_name, "': gradient for input ", k, " is ", gk.describe(),
               " but the input is ", xk.describe());
      Tensor& acc = grads[in.impl_.get()];
      acc = acc.defined() ? pt::add(acc, gk) : gk;  // sum when a variable feeds several ops
    }
  }

  if (!retain_graph) {
    for (const ImplPtr& v : order) {
      if (!v->node) continue;
      v->node->inputs.clear();  // drops saved inputs; the `order` handles keep destruction flat
      v->node->fn = nullptr;    // drops the tensors the lambda captured
      v->node->released = true;
    }
  }
}

}  // namespace pt::autograd
