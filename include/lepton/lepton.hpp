#pragma once
/// @file lepton.hpp
/// @brief The umbrella header: everything a user of lepton needs.
///
/// ```
/// #include <lepton/lepton.hpp>
/// namespace lp = lepton;
/// ```

#include "core/config.hpp"
#include "core/constraints.hpp"
#include "core/error.hpp"
#include "core/fpenv.hpp"
#include "core/isa.hpp"
#include "core/memory.hpp"
#include "core/parallel.hpp"
#include "core/param.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

#include "expr/batch_norm.hpp"
#include "expr/conv.hpp"
#include "expr/dropout.hpp"
#include "expr/elementwise.hpp"
#include "expr/evaluate.hpp"
#include "expr/linalg.hpp"
#include "expr/nn_ops.hpp"
#include "expr/pool.hpp"
#include "expr/reduce.hpp"
#include "expr/shape_ops.hpp"
#include "expr/share.hpp"

#include "autodiff/grad.hpp"
#include "autodiff/gradcheck.hpp"

#include "eval/anomaly.hpp"

#include "backend/cpu.hpp"

#include "data.hpp"
#include "nn.hpp"
#include "optim.hpp"
#include "train.hpp"
