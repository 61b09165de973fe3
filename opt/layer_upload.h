// Puts a decoder layer's tensors from a WeightSource into a resident layer "slot" on the run's device, on the I/O
// thread of a streamed walk, so the next layer loads while the current one computes.
//   CPU:  the source converts straight into the slot's tensors.
//   CUDA: each tensor is converted into one of two page-locked (pinned) host staging buffers and copied to the
//         slot with cudaMemcpyAsync on a copy stream of its own, so the copy overlaps the compute stream's kernels;
//         the compute stream waits for the upload's event before it touches the slot (no host wait), and an upload
//         into a slot waits for the event the compute stream recorded when it released the slot's previous layer.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "opt/decoder_layer.h"
#include "opt/weight_source.h"

namespace pt::opt {

class LayerUploader {
 public:
  // slots: how many layer slots take turns; max_tensor_bytes: the largest tensor of a layer in the slots' dtype.
  LayerUploader(Device device, int slots, int64_t max_tensor_bytes);
  ~LayerUploader();
  LayerUploader(const LayerUploader&) = delete;
  LayerUploader& operator=(const LayerUploader&) = delete;

  // I/O thread, once: the copies this thread makes (Tensor::to for the sinks) run on the copy stream.
  void use_copy_stream_on_this_thread();
  // Compute thread: the slot's layer is released once the work queued on the compute stream so far has run.
  void mark_released(int slot);
  // I/O thread: blocks until the compute stream is done with the slot (before its tensors are read to be written).
  void wait_released(int slot);
  // I/O thread: fills `tensors` (the slot's parameters by full name) from the source; masks[j] receives the keep-mask
  // of tensors[j] when the source has one (into the preallocated mask_buffers[j] on CUDA), else stays undefined.
  void upload(int slot, const WeightSource& source, const std::vector<std::pair<std::string, Tensor>>& tensors,
              const std::vector<Tensor>& mask_buffers, std::vector<Tensor>& masks);
  // Compute thread: later work on the compute stream waits for the slot's upload.
  void wait_uploaded(int slot);

 private:
  struct CudaState;
  Device device_;
  std::unique_ptr<CudaState> cuda_;  // null on the CPU
};

}  // namespace pt::opt
