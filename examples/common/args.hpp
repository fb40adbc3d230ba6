#pragma once
/// @file args.hpp
/// @brief The command-line parser every example shares: `--name VALUE` (or `--name=VALUE`) flags
///        bound to variables that hold their defaults, strict number parsing, and `--help`.
///
/// A bad command line never reaches the program: an unknown flag, a flag without its value, a
/// number with trailing characters (`12abc`, `1e3` for a count), a negative or out-of-range count, a
/// learning rate that is not a finite positive number, or a value outside a flag's choices prints one
/// line on stderr that names the flag and the value, e.g.
/// `tabular_binary: --epochs: expected a whole number >= 1, got 'abc' (see --help)`,
/// and parse() returns exit code 2. `--help` (`-h`) prints the usage with every default on stdout and
/// returns 0. Copy this header along with an example that you copy.
///
/// **Example**:
/// ```
/// std::size_t epochs = 30;
/// double lr = 3e-3;
/// lepton_examples::arg_parser args("tabular_binary", "trains a small MLP on a CSV file");
/// args.add("--epochs", epochs, "N", "training epochs", 1);
/// args.add("--lr", lr, "LR", "learning rate");
/// if (auto rc = args.parse(argc, argv)) return *rc; // --help: 0, a bad command line: 2
/// ```

#include <algorithm>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace lepton_examples {

/// @brief Flags bound to variables; see the file comment.
class arg_parser {
public:
  /// `program` prefixes every message; `summary` is the first line of `--help`.
  arg_parser(std::string program, std::string summary)
      : m_program(std::move(program)), m_summary(std::move(summary)) {}

  /// @brief A text value (a path, a file name). **Example**: `args.add("--csv", csv, "FILE", "input");`
  void add(std::string name, std::string& value, std::string meta, std::string help) {
    add_option(std::move(name), std::move(meta), std::move(help), value.empty() ? "" : value,
               [&value](std::string_view text) -> std::optional<std::string> {
                 value = std::string(text);
                 return std::nullopt;
               });
  }

  /// @brief A whole number in [min, max], written in decimal digits only (no sign, exponent or
  ///        trailing characters). **Example**: `args.add("--batch", batch, "B", "batch size", 1);`
  template <std::unsigned_integral T> void add(std::string name, T& value, std::string meta, std::string help,
                                               std::type_identity_t<T> min = 0,
                                               std::type_identity_t<T> max = std::numeric_limits<T>::max()) {
    std::string expected = max == std::numeric_limits<T>::max()
                               ? "a whole number >= " + std::to_string(min)
                               : "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    add_option(std::move(name), std::move(meta), std::move(help), std::to_string(value),
               [&value, min, max, expected](std::string_view text) -> std::optional<std::string> {
                 T v{};
                 auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
                 if (ec == std::errc::result_out_of_range)
                   return "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
                 if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
                   return expected;
                 value = v;
                 return std::nullopt;
               });
  }

  /// @brief A finite number > 0 (`3e-3`, `0.5`; not `nan`, `inf`, `0` or `-1`). A variable that
  ///        starts at 0, which the flag cannot give, means "not given": `--help` shows no default
  ///        for it (say in `help` what applies then).
  /// **Example**: `args.add("--lr", lr, "LR", "learning rate");`
  void add(std::string name, double& value, std::string meta, std::string help) {
    char shown[32] = "";
    if (value != 0) std::snprintf(shown, sizeof shown, "%g", value);
    add_option(std::move(name), std::move(meta), std::move(help), shown,
               [&value](std::string_view text) -> std::optional<std::string> {
                 double v = 0;
                 auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
                 if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) || !(v > 0))
                   return std::string("a finite number > 0");
                 value = v;
                 return std::nullopt;
               });
  }

  /// @brief One of `choices`. **Example**: `args.add_choice("--reduce", mode, {"auto", "ordered"}, "how");`
  void add_choice(std::string name, std::string& value, std::vector<std::string> choices, std::string help) {
    std::string expected = "one of ";
    for (std::size_t i = 0; i < choices.size(); ++i) expected += (i ? ", " : "") + choices[i];
    std::string meta;
    for (std::size_t i = 0; i < choices.size(); ++i) meta += (i ? "|" : "") + choices[i];
    add_option(std::move(name), std::move(meta), std::move(help), value,
               [&value, choices = std::move(choices),
                expected](std::string_view text) -> std::optional<std::string> {
                 for (auto const& c : choices)
                   if (text == c) {
                     value = c;
                     return std::nullopt;
                   }
                 return expected;
               });
  }

  /// @brief Parses `argv[1..argc)`. Returns nothing when the program should go on, else its exit
  ///        code: 0 after `--help` (usage on stdout), 2 after a bad command line (one line on stderr).
  ///        A later occurrence of a flag overrides an earlier one.
  std::optional<int> parse(int argc, char const* const* argv) {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        if (m_print) std::fputs(usage().c_str(), stdout);
        return 0;
      }
      if (!arg.starts_with("--")) return fail("unexpected argument '" + std::string(arg) + "'");
      std::string_view name = arg, text;
      bool has_text = false;
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        text = arg.substr(eq + 1);
        has_text = true;
      }
      option const* opt = find(name);
      if (!opt) return fail("unknown option '" + std::string(name) + "'");
      if (!has_text) {
        // A flag in the value's place means the value is missing (`--epochs --batch 8`).
        if (i + 1 >= argc || std::string_view(argv[i + 1]).starts_with("--"))
          return fail(std::string(name) + " needs a value");
        text = argv[++i];
      }
      if (auto expected = opt->set(text))
        return fail(std::string(name) + ": expected " + *expected + ", got '" + std::string(text) + "'");
    }
    return std::nullopt;
  }
  /// parse() for main's `char** argv`.
  std::optional<int> parse(int argc, char** argv) {
    return parse(argc, static_cast<char const* const*>(argv));
  }

  /// @brief Whether parse() prints (default true); e.g. only rank 0 of a distributed job prints.
  void set_print(bool print) noexcept { m_print = print; }

  /// @brief The `--help` text: the usage line, the summary, then one line per flag with its default.
  std::string usage() const {
    std::string s = "usage: " + m_program;
    for (auto const& o : m_options) s += " [" + o.name + " " + o.meta + "]";
    s += "\n" + m_summary + "\n\noptions:\n";
    // Flags up to 24 characters wide line up; a longer one has its help on the next line.
    std::size_t width = 10;
    for (auto const& o : m_options)
      if (o.name.size() + 1 + o.meta.size() <= 24) width = std::max(width, o.name.size() + 1 + o.meta.size());
    auto line = [&](std::string const& left, std::string const& right) {
      s += "  " + left;
      // (appends, not `"\n" + std::string(...)`: GCC 12 -O3 warns -Wrestrict on that, a false positive)
      if (left.size() <= width) {
        s.append(width + 2 - left.size(), ' ');
      } else {
        s += '\n';
        s.append(width + 4, ' ');
      }
      s += right + "\n";
    };
    for (auto const& o : m_options)
      line(o.name + " " + o.meta,
           o.help + (o.default_text.empty() ? "" : " (default: " + o.default_text + ")"));
    line("-h, --help", "print this help and exit");
    return s;
  }

private:
  struct option {
    std::string name, meta, help, default_text;
    /// Stores the value and returns nothing, or returns what was expected instead.
    std::function<std::optional<std::string>(std::string_view)> set;
  };

  void add_option(std::string name, std::string meta, std::string help, std::string default_text,
                  std::function<std::optional<std::string>(std::string_view)> set) {
    m_options.push_back(
        {std::move(name), std::move(meta), std::move(help), std::move(default_text), std::move(set)});
  }

  option const* find(std::string_view name) const {
    for (auto const& o : m_options)
      if (o.name == name) return &o;
    return nullptr;
  }

  int fail(std::string const& msg) const {
    if (m_print) std::fprintf(stderr, "%s: %s (see --help)\n", m_program.c_str(), msg.c_str());
    return 2;
  }

  std::string m_program, m_summary;
  std::vector<option> m_options;
  bool m_print = true;
};

} // namespace lepton_examples
