#pragma once
/// @file error.hpp
/// @brief Exception types thrown by lepton. Every message starts with "lepton: ".

#include <stdexcept>
#include <string>

namespace lepton {

/// @brief Base class of every exception lepton throws on its own.
class error : public std::runtime_error {
public:
  explicit error(std::string const& what) : std::runtime_error(with_prefix(what)) {}

private:
  static std::string with_prefix(std::string const& s) {
    return s.rfind("lepton: ", 0) == 0 ? s : "lepton: " + s;
  }
};

/// @brief A run-time shape mismatch (for example the batch sizes of two operands differ).
///        The message names both shapes and the operation.
class shape_error : public error {
public:
  using error::error;
};

/// @brief An argument outside its valid range (a negative learning rate, an unknown option).
class value_error : public error {
public:
  using error::error;
};

/// @brief An element index outside a tensor's shape (checked accessors such as `tensor::at`).
class index_error : public error {
public:
  using error::error;
};

/// @brief A file could not be opened, read or written. The message names the file.
class io_error : public error {
public:
  using error::error;
};

/// @brief A file was readable but its content is malformed (bad magic, truncated, inconsistent sizes).
///        Derives from io_error so that one handler can catch both.
class format_error : public io_error {
public:
  using io_error::io_error;
};

/// @brief A CUDA device could not be used (no device, no driver, a failed CUDA call).
class device_error : public error {
public:
  using error::error;
};

/// @brief A numerical anomaly (a non-finite loss or value) detected by a check the user asked for.
class numeric_error : public error {
public:
  using error::error;
};

} // namespace lepton
