// The hidden states of a layer walk for every sequence at once ([n, t, c]): the calibration inputs of a layer in
// sequential pruning, the windows of a layer-major perplexity evaluation. Kept on the run's device when they fit,
// else in host memory, else in a file (unlinked when created: it disappears with the process), and read and written
// in chunks of sequences that visit the device one at a time.
//   automatic: device when two stores (inputs and outputs) take at most half of the free device memory (on the
//              CPU: of the available host memory), else host when they take at most half of the available host
//              memory, else disk.
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace pt::opt {

enum class ActivationPlace { automatic, device, host, disk };
// "auto" | "device" | "host" | "disk"; the legacy booleans: "true" = host, "false" = device.
ActivationPlace parse_activation_place(const std::string& name);
const char* activation_place_name(ActivationPlace place);
// Where `automatic` puts `stores` stores of [n, t, c] dtype for a walk on `device` (others come back unchanged).
ActivationPlace resolve_activation_place(ActivationPlace place, int64_t n, int64_t t, int64_t c, DType dtype,
                                         Device device, int stores = 2);

class ActivationStore {
 public:
  ActivationStore() = default;
  // place must be resolved (not automatic). spill_dir: where a disk store's file is created.
  ActivationStore(int64_t n, int64_t t, int64_t c, DType dtype, Device device, ActivationPlace place,
                  const std::string& spill_dir);
  ~ActivationStore();
  ActivationStore(ActivationStore&& o) noexcept { *this = std::move(o); }
  ActivationStore& operator=(ActivationStore&& o) noexcept;

  bool defined() const { return n_ > 0; }
  int64_t size() const { return n_; }
  ActivationPlace place() const { return place_; }
  // Sequences [s, s + b) on the walk's device (a view of the store when it is there).
  Tensor read(int64_t s, int64_t b) const;
  // rows [b, t, c] (any device) into sequences [s, s + b).
  void write(int64_t s, const Tensor& rows);
  Tensor whole() const;  // every sequence on the walk's device (a view unless the store is on disk): inspection hooks

 private:
  int64_t n_ = 0, t_ = 0, c_ = 0;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  ActivationPlace place_ = ActivationPlace::device;
  Tensor memory_;   // device / host stores
  int fd_ = -1;     // disk store
  std::string path_;  // the disk file's name while it was created (messages)
};

}  // namespace pt::opt
