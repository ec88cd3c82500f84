// The parameter store of a model: every parameter by its Hugging Face name with its shape and
// stored dtype. Trainable parameters live in one flat f32 buffer (the master copy; bf16/f16
// checkpoints are widened into it) and their gradients in a second flat buffer of the same layout,
// so that optimizer state can join in the same layout and whole-model operations (zeroing, norms,
// the optimizer step) are single passes. Frozen parameters stay where they were loaded (a
// memory-mapped file, in its stored dtype) and get no gradient.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/dtype.h"
#include "../core/storage.h"

namespace vt {

struct Param {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  bool trainable = false;
  WeightRef value;        // what the network reads (the master copy when trainable)
  float* grad = nullptr;  // its gradient (trainable only)
  int64_t offset = -1;    // element offset in the flat master / gradient buffers (trainable only)
  StoragePtr source;      // the loaded storage (frozen parameters read it; kept alive here)
};

// A parameter as handed in: its data (any offset into a storage) and whether it trains.
struct ParamSource {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  StoragePtr storage;
  int64_t offset = 0;  // elements
  bool trainable = false;
  bool zero = false;   // no data: a new parameter initialised to zero (LoRA adapters)
};

class ParamStore {
 public:
  // Lays out the trainable parameters (each 64-byte aligned in the flat buffers), copies and
  // widens their values, zeroes the gradients. Throws std::bad_alloc when memory runs out.
  explicit ParamStore(std::vector<ParamSource> sources);
  const Param* find(const std::string& name) const;
  const std::vector<Param>& params() const { return params_; }
  const StoragePtr& master() const { return master_; }
  const StoragePtr& grads() const { return grads_; }
  int64_t trainable_numel() const { return trainable_numel_; }
  // Element count of the flat buffers (trainable numel plus alignment padding).
  int64_t flat_numel() const { return flat_numel_; }
  void zero_grad();

 private:
  std::vector<Param> params_;
  std::unordered_map<std::string, size_t> index_;
  StoragePtr master_, grads_;
  int64_t trainable_numel_ = 0, flat_numel_ = 0;
};

}  // namespace vt
