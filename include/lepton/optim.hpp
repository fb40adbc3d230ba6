#pragma once
/// @file optim.hpp
/// @brief The optim module: sgd, adam, adamw, rmsprop, learning-rate schedulers.

#include "optim/adam.hpp"
#include "optim/optimizer.hpp"
#include "optim/rmsprop.hpp"
#include "optim/scheduler.hpp"
#include "optim/sgd.hpp"
