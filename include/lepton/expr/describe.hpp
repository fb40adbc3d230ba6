#pragma once
/// @file describe.hpp
/// @brief `detail::describe<Node>`: a readable name of an expression node type, such as
///        `relu(add(matmul(tensor, param), param))`, used in error and anomaly messages. Each op
///        header specialises it next to its node.

#include <string>

namespace lepton::detail {

/// A readable description of an expression node type; each op header specialises it next to its node.
template <class Node> struct describe {
  static std::string get() { return "expression"; }
};

} // namespace lepton::detail
