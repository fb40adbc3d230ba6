#pragma once
/// @file data.hpp
/// @brief The data module: IDX (MNIST, Fashion-MNIST) and CSV readers, `dataset`, seeded shuffling
///        and the allocation-free batch `loader`. See docs/data.md.
///
/// **Example**:
/// ```
/// #include <lepton/data.hpp>
/// namespace ld = lepton::data;
/// auto train = ld::fashion_mnist("/usr/share/datasets/fashion-mnist", ld::split::train);
/// ld::loader batches(train, {.batch = 64, .seed = 42});
/// for (auto [x, y] : batches.epoch(0)) { /* x: (b, 784), y: (b) */ }
/// ```

#include "data/augment.hpp"
#include "data/cifar10.hpp"
#include "data/csv.hpp"
#include "data/dataset.hpp"
#include "data/fashion_mnist.hpp"
#include "data/idx.hpp"
#include "data/loader.hpp"
#include "data/shuffle.hpp"
