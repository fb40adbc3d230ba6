#pragma once
/// @file cpu.hpp
/// @brief The CPU backend: the evaluators of every node type and the CPU runner. Included by
///        <lepton/lepton.hpp>; include it alone with the expr/ headers you use to evaluate
///        expressions without the rest of the library.

#include "cpu/batch_norm.hpp"
#include "cpu/conv.hpp"
#include "cpu/conv_kernels.hpp"
#include "cpu/dropout.hpp"
#include "cpu/elementwise.hpp"
#include "cpu/gemm.hpp"
#include "cpu/leaf.hpp"
#include "cpu/linalg.hpp"
#include "cpu/nn_ops.hpp"
#include "cpu/pool.hpp"
#include "cpu/reduce.hpp"
#include "cpu/run.hpp"
#include "cpu/shape_ops.hpp"
#include "cpu/share.hpp"
