#pragma once
/// @file logging.hpp
/// @brief Rank-0 output: a stream that prints on the root rank only, and callbacks run on the
///        root only with their outcome shared by every rank.

#include <iostream>
#include <ostream>
#include <streambuf>
#include <utility>

#include "collectives.hpp"
#include "environment.hpp"

namespace lepton::dist {

namespace detail {
/// A stream buffer that discards everything.
class null_buf : public std::streambuf {
protected:
  int overflow(int c) override { return traits_type::not_eof(c); }
  std::streamsize xsputn(char const*, std::streamsize n) override { return n; }
};
} // namespace detail

/// @brief A stream that discards what is written to it.
inline std::ostream& null_stream() {
  static detail::null_buf buf;
  static std::ostream os(&buf);
  return os;
}

/// @brief `os` on the root rank, a discarding stream elsewhere.
/// **Example**: `lepton::dist::log(comm) << "epoch " << e << " done\n";`
inline std::ostream& log(communicator const& c, std::ostream& os = std::cout) {
  return c.is_root() ? os : null_stream();
}

/// @brief Wraps `f` so that calling the wrapper on every rank runs `f` on the root only, and a
///        failure there makes every rank throw (see on_root). E.g. a lepton::io::checkpointer
///        as a custom loop's end-of-epoch hook. (dist::fit already runs its on_checkpoint this way.)
/// **Example**: `auto save = lepton::dist::rank0_only(comm, lepton::io::checkpointer(model, opt, {.dir = "ckpt"}));`
template <class F> auto rank0_only(communicator const& c, F f) {
  return [&c, f = std::move(f)](auto const&... args) mutable {
    on_root(
        c, [&] { f(args...); }, 0, "a rank-0 callback");
  };
}

} // namespace lepton::dist
