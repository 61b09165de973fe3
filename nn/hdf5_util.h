// HDF5 plumbing for the checkpoint files (internal to nn/checkpoint*.cpp): HDF5's error stack turned into one
// pt::Error line that names the file and the object, an owning handle, the IEEE half type HDF5 1.10 lacks, and
// the file-access settings.
#pragma once
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "tensor/error.h"

namespace pt::nn::hdf5 {

// ---- HDF5 error handling -------------------------------------------------------------------------------

inline herr_t collect_error(unsigned, const H5E_error2_t* e, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(std::string(e->func_name ? e->func_name : "?") + ": " +
                                                         (e->desc ? e->desc : "?"));
  return 0;
}

// HDF5's error stack as one line: the API call that failed and the innermost cause.
inline std::string hdf5_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  if (lines.empty()) return "no detail from HDF5";
  return lines.size() == 1 ? lines[0] : lines.front() + " <- " + lines.back();
}

// Where failures are reported. On load, any HDF5 library failure means the file is damaged; structural problems
// (a missing attribute, a wrong version) get their own message.
struct Where {
  std::string path;
  bool loading = false;
  std::string object = "/";

  [[noreturn]] void hdf5_failure(const char* call, int line) const {
    std::string fn(call, std::find(call, call + std::strlen(call), '('));
    std::string detail = object + ": " + fn + " failed: " + hdf5_error_text();
    detail.erase(std::remove(detail.begin(), detail.end(), '\n'), detail.end());
    detail = loading ? "checkpoint " + path + " is truncated or corrupt (" + detail + ")"
                     : "save_checkpoint " + path + ": " + detail;
    detail::throw_error(__FILE__, line, detail);
  }
  template <class... A> [[noreturn]] void fail(const A&... parts) const {
    detail::throw_error(__FILE__, __LINE__,
                        detail::concat(loading ? "checkpoint " : "save_checkpoint ", path, ": ", parts...));
  }
  // Damage that HDF5 cannot see (sizes that disagree across datasets): reported like an HDF5 failure on load.
  template <class... A> [[noreturn]] void corrupt(const A&... parts) const {
    detail::throw_error(__FILE__, __LINE__,
                        detail::concat("checkpoint ", path, " is truncated or corrupt (", parts..., ")"));
  }
};

// Once, before HDF5's first call: no error-stack printing (errors become pt::Error) and no HDF5 teardown at exit.
// HDF5 1.10 cannot close a file whose final flush failed (disk full): the file object stays behind and the
// library's atexit teardown crashes on it. Every file this code opens is closed, so the teardown has no work.
inline void init_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5dont_atexit(); });
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

// Debian's HDF5 is the serial build, not thread-safe: every entry point of the checkpoint code holds this lock
// (recursive: save_checkpoint calls the writer, which takes it again).
inline std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex m;
  return m;
}
using Hdf5Lock = std::lock_guard<std::recursive_mutex>;

template <class R> R h5_check(R r, const char* call, const Where& where, int line) {
  if (r < 0) where.hdf5_failure(call, line);
  return r;
}
// Every HDF5 call goes through H5_CHECK (a `Where where` must be in scope).
#define H5_CHECK(call) h5_check((call), #call, where, __LINE__)

// Owns one HDF5 id; close() reports the result so the writer can check its final closes.
class H5Id {
 public:
  H5Id(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  ~H5Id() { close(); }
  H5Id(H5Id&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  operator hid_t() const { return id_; }
  herr_t close() {
    herr_t r = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return r;
  }

 private:
  hid_t id_;
  herr_t (*closer_)(hid_t);
};
#define H5_OPEN(call, closer) H5Id(H5_CHECK(call), closer)

// IEEE binary16 as an HDF5 type (1.10 has no predefined F16): h5py reads it as float16.
inline H5Id make_half_type(const Where& where) {
  H5Id t = H5_OPEN(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  H5_CHECK(H5Tset_fields(t, 15, 10, 5, 0, 10));  // sign bit, exponent at 10 (5 bits), mantissa at 0 (10 bits)
  H5_CHECK(H5Tset_size(t, 2));                   // also shrinks the precision to 16 bits
  H5_CHECK(H5Tset_ebias(t, 15));
  return t;
}

inline bool is_ieee_half(hid_t t) {
  size_t spos, epos, esize, mpos, msize;
  if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
  return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(t) == 15 &&
         H5Tget_offset(t) == 0 && H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

// File access: the HDF5 1.10 object format, whose metadata and chunk indexes are all checksummed (the 1.8 format's
// chunk B-trees are not: a damaged one silently reads a chunk as zeros); readable by HDF5 >= 1.10 and h5py. No hard
// failure on filesystems without file locks (NFS, some Lustre mounts).
inline H5Id file_access(const Where& where) {
  H5Id fapl = H5_OPEN(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110));
#if H5_VERSION_GE(1, 10, 7)
  H5_CHECK(H5Pset_file_locking(fapl, true, true));
#endif
  return fapl;
}

}  // namespace pt::nn::hdf5
