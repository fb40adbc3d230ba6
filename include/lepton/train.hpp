#pragma once
/// @file train.hpp
/// @brief The train module: fit / evaluate.
#include "train/fit.hpp"
