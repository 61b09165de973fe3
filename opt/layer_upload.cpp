#include "opt/layer_upload.h"

#include <functional>

#include "tensor/error.h"
#include "tensor/storage.h"
#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::opt {

#if PT_CUDA
// The copy stream, two pinned staging buffers with the events that say when their copies are done, and per slot
// the event of its upload and of its release by the compute stream.
struct LayerUploader::CudaState {
  cudaStream_t copy = nullptr;
  std::shared_ptr<Storage> staging[2];
  cudaEvent_t staging_done[2] = {nullptr, nullptr};
  std::vector<cudaEvent_t> uploaded, released;

  CudaState(int slots, int64_t max_bytes) : uploaded(size_t(slots)), released(size_t(slots)) {
    // Non-blocking: the copy stream never waits for the legacy default stream the compute thread may run on.
    PT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    for (int k = 0; k < 2; ++k) {
      staging[k] = Storage::pinned_host(size_t(max_bytes));
      PT_CUDA_CHECK(cudaEventCreateWithFlags(&staging_done[k], cudaEventDisableTiming));
    }
    for (auto* events : {&uploaded, &released})
      for (auto& e : *events) PT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    // Nothing to wait for yet: record both kinds once so the first waits return at once.
    for (int s = 0; s < slots; ++s) {
      PT_CUDA_CHECK(cudaEventRecord(uploaded[size_t(s)], copy));
      PT_CUDA_CHECK(cudaEventRecord(released[size_t(s)], copy));
    }
    for (auto& e : staging_done) PT_CUDA_CHECK(cudaEventRecord(e, copy));
  }
  ~CudaState() {
    cudaStreamSynchronize(copy);
    for (auto* events : {&uploaded, &released})
      for (auto& e : *events) cudaEventDestroy(e);
    for (auto& e : staging_done) cudaEventDestroy(e);
    cudaStreamDestroy(copy);
  }
};
#else
struct LayerUploader::CudaState {};
#endif

LayerUploader::LayerUploader(Device device, int slots, int64_t max_tensor_bytes) : device_(device) {
#if PT_CUDA
  if (device == Device::cuda) cuda_ = std::make_unique<CudaState>(slots, max_tensor_bytes);
#else
  PT_CHECK(device == Device::cpu, "streamed layers on ", device_name(device), ": this build has no CUDA support");
#endif
}

LayerUploader::~LayerUploader() = default;

void LayerUploader::use_copy_stream_on_this_thread() {
#if PT_CUDA
  if (cuda_) cuda::set_current_stream(cuda_->copy);
#endif
}

void LayerUploader::mark_released(int slot) {
#if PT_CUDA
  if (cuda_) PT_CUDA_CHECK(cudaEventRecord(cuda_->released[size_t(slot)], cuda::current_stream()));
#endif
}

void LayerUploader::wait_released(int slot) {
#if PT_CUDA
  if (cuda_) PT_CUDA_CHECK(cudaEventSynchronize(cuda_->released[size_t(slot)]));
#endif
}

void LayerUploader::wait_uploaded(int slot) {
#if PT_CUDA
  if (cuda_) PT_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(), cuda_->uploaded[size_t(slot)], 0));
#endif
}

void LayerUploader::upload(int slot, const WeightSource& source, const std::vector<std::pair<std::string, Tensor>>& tensors,
                           const std::vector<Tensor>& mask_buffers, std::vector<Tensor>& masks) {
  masks.assign(tensors.size(), Tensor());
  if (!cuda_) {
    for (size_t j = 0; j < tensors.size(); ++j) masks[j] = source.read_into(tensors[j].first, tensors[j].second);
    return;
  }
#if PT_CUDA
  CudaState& c = *cuda_;
  // The slot's previous layer may still be read by kernels queued on the compute stream.
  PT_CUDA_CHECK(cudaStreamWaitEvent(c.copy, c.released[size_t(slot)], 0));
  int k = 0;
  // One tensor (or mask) through a staging buffer: convert on the host into pinned memory, copy asynchronously.
  auto stage = [&](const Tensor& dst, const std::function<Tensor(const Tensor&)>& fill) {
    PT_CHECK(size_t(dst.nbytes()) <= c.staging[k]->nbytes(), "streamed layers: tensor ", dst.describe(),
             " is larger than the staging buffer");
    PT_CUDA_CHECK(cudaEventSynchronize(c.staging_done[k]));  // its previous copy has left the buffer
    const Tensor host(c.staging[k], dst.shape(), contiguous_strides(dst.shape()), 0, dst.dtype());
    Tensor mask = fill(host);
    PT_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), host.data_ptr(), size_t(dst.nbytes()), cudaMemcpyHostToDevice, c.copy));
    PT_CUDA_CHECK(cudaEventRecord(c.staging_done[k], c.copy));
    k ^= 1;
    return mask;
  };
  for (size_t j = 0; j < tensors.size(); ++j) {
    const auto& [name, dst] = tensors[j];
    const Tensor mask = stage(dst, [&](const Tensor& host) { return source.read_into(name, host); });
    if (!mask.defined()) continue;
    PT_CHECK(mask_buffers[j].defined() && mask_buffers[j].shape() == mask.shape(), "streamed layers: ", name,
             " has a mask ", mask.describe(), " but no mask buffer of its shape");
    stage(mask_buffers[j], [&](const Tensor& host) {
      Tensor(host).copy_(mask);
      return Tensor();
    });
    masks[j] = mask_buffers[j];
  }
  PT_CUDA_CHECK(cudaEventRecord(c.uploaded[size_t(slot)], c.copy));
#endif
}

}  // namespace pt::opt
