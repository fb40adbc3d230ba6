#pragma once
/// @file io.hpp
/// @brief The io module: tensors to and from files. safetensors (models and training checkpoints),
///        .npy and .npz (numpy interoperation), all written atomically and validated on load.
///        See docs/io.md.
///
/// **Example**:
/// ```
/// #include <lepton/io.hpp>
/// lepton::tensor<float, 784, 256> w;
/// lepton::io::save_safetensors("m.safetensors", {lepton::io::ref("fc1.weight", w)});
/// lepton::io::load_safetensors_into("m.safetensors", {lepton::io::target("fc1.weight", w)});
/// ```

#include "io/atomic_file.hpp"
#include "io/dtype.hpp"
#include "io/dyn_tensor.hpp"
#include "io/model_file.hpp"
#include "io/npy.hpp"
#include "io/npz.hpp"
#include "io/reader.hpp"
#include "io/safetensors.hpp"
// Models and training checkpoints: they list the model with nn::model_view, so they live in train/.
#include "train/checkpoint.hpp"
