#pragma once
/// @file nn.hpp
/// @brief The nn module: layers, models as aggregates, parameter reflection and initialisation,
///        compile-time size inference (nn::input, linear<Out>, ...) and model summaries.

#include "nn/init.hpp"
#include "nn/layer.hpp"
#include "nn/layers/activation.hpp"
#include "nn/layers/batch_norm.hpp"
#include "nn/layers/conv2d.hpp"
#include "nn/layers/dropout.hpp"
#include "nn/layers/infer.hpp"
#include "nn/layers/linear.hpp"
#include "nn/layers/pooling.hpp"
#include "nn/layers/sequential.hpp"
#include "nn/reflect.hpp"
#include "nn/summary.hpp"
