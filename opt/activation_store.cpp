#include "opt/activation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "tensor/error.h"
#include "tensor/memory_report.h"

namespace pt::opt {

ActivationPlace parse_activation_place(const std::string& name) {
  if (name == "auto") return ActivationPlace::automatic;
  if (name == "device" || name == "false") return ActivationPlace::device;
  if (name == "host" || name == "true") return ActivationPlace::host;
  if (name == "disk") return ActivationPlace::disk;
  PT_FAIL("unknown activation place '", name, "' (allowed: auto, device, host, disk)");
}

const char* activation_place_name(ActivationPlace place) {
  switch (place) {
    case ActivationPlace::automatic: return "auto";
    case ActivationPlace::device: return "device";
    case ActivationPlace::host: return "host";
    case ActivationPlace::disk: return "disk";
  }
  return "?";
}

ActivationPlace resolve_activation_place(ActivationPlace place, int64_t n, int64_t t, int64_t c, DType dtype,
                                         Device device, int stores) {
  if (place != ActivationPlace::automatic) return place;
  const double bytes = double(stores) * double(n) * double(t) * double(c) * double(dtype_size(dtype));
  const double host = double(host_available_bytes());
  const double on_device = device == Device::cuda ? double(device_free_bytes()) : host;
  if (bytes <= on_device / 2) return ActivationPlace::device;
  if (bytes <= host / 2) return ActivationPlace::host;
  return ActivationPlace::disk;
}

ActivationStore::ActivationStore(int64_t n, int64_t t, int64_t c, DType dtype, Device device, ActivationPlace place,
                                 const std::string& spill_dir)
    : n_(n), t_(t), c_(c), dtype_(dtype), device_(device), place_(place) {
  PT_CHECK(place != ActivationPlace::automatic, "ActivationStore: resolve the place first");
  if (place != ActivationPlace::disk) {
    memory_ = Tensor::empty({n, t, c}, dtype, place == ActivationPlace::device ? device : Device::cpu);
    return;
  }
  const std::string dir = spill_dir.empty() ? std::filesystem::temp_directory_path().string() : spill_dir;
  std::string name = dir + "/pt-activations-XXXXXX";
  fd_ = ::mkstemp(name.data());
  PT_CHECK(fd_ >= 0, "activations on disk: cannot create a file in ", dir, ": ", std::strerror(errno));
  ::unlink(name.c_str());  // gone with the process, whatever way it ends
  path_ = name;
  const off_t bytes = off_t(n * t * c * int64_t(dtype_size(dtype)));
  if (::ftruncate(fd_, bytes) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    PT_FAIL("activations on disk: cannot size ", path_, " (in ", dir, ") to ", bytes, " bytes: ", std::strerror(err));
  }
}

ActivationStore::~ActivationStore() {
  if (fd_ >= 0) ::close(fd_);
}

ActivationStore& ActivationStore::operator=(ActivationStore&& o) noexcept {
  if (this == &o) return *this;
  if (fd_ >= 0) ::close(fd_);
  n_ = o.n_, t_ = o.t_, c_ = o.c_, dtype_ = o.dtype_, device_ = o.device_, place_ = o.place_;
  memory_ = std::move(o.memory_);
  fd_ = std::exchange(o.fd_, -1);
  path_ = std::move(o.path_);
  o.n_ = 0;
  return *this;
}

Tensor ActivationStore::read(int64_t s, int64_t b) const {
  PT_CHECK(s >= 0 && b >= 0 && s + b <= n_, "ActivationStore::read: sequences [", s, ", ", s + b, ") outside [0, ", n_, ")");
  if (fd_ < 0) return memory_.narrow(0, s, b).to(device_);
  Tensor host = Tensor::empty({b, t_, c_}, dtype_, Device::cpu);
  const size_t bytes = size_t(host.nbytes());
  const off_t at = off_t(s * t_ * c_ * int64_t(dtype_size(dtype_)));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd_, static_cast<char*>(host.data_ptr()) + done, bytes - done, at + off_t(done));
    PT_CHECK(got > 0, "activations on disk: reading ", path_, " failed: ", got == 0 ? "unexpected end" : std::strerror(errno));
    done += size_t(got);
  }
  return host.to(device_);
}

void ActivationStore::write(int64_t s, const Tensor& rows) {
  const int64_t b = rows.size(0);
  PT_CHECK(rows.dim() == 3 && rows.size(1) == t_ && rows.size(2) == c_ && s >= 0 && s + b <= n_,
           "ActivationStore::write: rows ", rows.describe(), " at ", s, " do not fit [", n_, ", ", t_, ", ", c_, "]");
  if (fd_ < 0) {
    memory_.narrow(0, s, b).copy_(rows);
    return;
  }
  const Tensor host = rows.to(Device::cpu).to(dtype_).contiguous();
  const size_t bytes = size_t(host.nbytes());
  const off_t at = off_t(s * t_ * c_ * int64_t(dtype_size(dtype_)));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t put = ::pwrite(fd_, static_cast<const char*>(host.data_ptr()) + done, bytes - done, at + off_t(done));
    PT_CHECK(put > 0, "activations on disk: writing ", path_, " failed: ", std::strerror(errno),
             " (the disk may be full: choose another place with [prune] offload_activations)");
    done += size_t(put);
  }
}

Tensor ActivationStore::whole() const { return fd_ < 0 ? memory_.to(device_) : read(0, n_); }

}  // namespace pt::opt
