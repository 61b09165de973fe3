// Errors: every failure is a pt::Error carrying what went wrong and where (file:line).
// Apps catch it at the top level, print the one-line message and exit non-zero.
// It lives in base/, the lowest layer, so that every layer above (tensor/, corpus/'s file writing) shares it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pt {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by Cholesky when the matrix is not (numerically) positive definite; callers such as
// SparseGPT catch this one type to retry with more damping.
class NotPositiveDefinite : public Error {
 public:
  NotPositiveDefinite(const std::string& what, long long minor) : Error(what), minor_(minor) {}
  long long minor() const { return minor_; }  // 1-based order of the failing leading minor
 private:
  long long minor_;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace pt

// PT_CHECK(cond, parts...): throw pt::Error("parts... [file:line]") when cond is false.
#define PT_CHECK(cond, ...)                                                                \
  do {                                                                                     \
    if (!(cond)) ::pt::detail::throw_error(__FILE__, __LINE__, ::pt::detail::concat(__VA_ARGS__)); \
  } while (0)
#define PT_FAIL(...) ::pt::detail::throw_error(__FILE__, __LINE__, ::pt::detail::concat(__VA_ARGS__))
