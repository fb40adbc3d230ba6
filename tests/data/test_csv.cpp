// CSV reader: valid files (header, delimiters, quotes, CRLF, target selection) and errors that name
// the file, the line and the column.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <lepton/data/csv.hpp>
#include <lepton/data/dataset.hpp>

#include "data_test_util.hpp"

using namespace lepton_data_test;
namespace ld = lepton::data;

TEST_CASE("read_csv reads features and the last column as target", "[data][csv]") {
  temp_dir dir;
  auto p = dir / "iris.csv";
  write_text(p, "sepal_length,sepal_width,label\n5.1,3.5,0\n4.9,3.0,1\n\n6.2,+2.9e0,2\n");
  auto t = ld::read_csv(p);
  REQUIRE(t.rows() == 3);
  CHECK(t.features.shape() == lepton::shape_t<2>{3, 2});
  CHECK(t.features(0, 0) == 5.1f);
  CHECK(t.features(2, 1) == 2.9f);
  CHECK(t.target.shape() == lepton::shape_t<1>{3});
  CHECK(t.target(1) == 1.0f);
  CHECK(t.feature_names == std::vector<std::string>{"sepal_length", "sepal_width"});
  CHECK(t.target_name == "label");

  auto labels = ld::to_labels(t.target);
  CHECK(labels(2) == 2);
  auto x = ld::to_static<2>(t.features);
  static_assert(std::is_same_v<decltype(x), lepton::tensor<float, lepton::dyn, 2>>);
  CHECK(x(2, 0) == 6.2f);
  LEPTON_CHECK_THROWS_NAMING(ld::to_static<3>(t.features), lepton::shape_error, "to_static(3)",
                             "2 columns, expected 3");
  ld::dataset ds(std::move(x), std::move(labels));
  CHECK(ds.size() == 3);
}

TEST_CASE("read_csv options: delimiter, no header, target by index or name, no target", "[data][csv]") {
  SECTION("semicolons, no header, first column as target") {
    auto t = ld::parse_csv("1;10;100\r\n2;20;200\r\n", {.delimiter = ';', .header = false, .target = 0});
    CHECK(t.features.shape() == lepton::shape_t<2>{2, 2});
    CHECK(t.features(1, 1) == 200.0f);
    CHECK(t.target(1) == 2.0f);
    CHECK(t.feature_names == std::vector<std::string>{"column 2", "column 3"});
    CHECK(t.target_name == "column 1");
  }
  SECTION("target by name") {
    auto t = ld::parse_csv("a,quality,b\n1,5,2\n", {.target_name = "quality"});
    CHECK(t.target(0) == 5.0f);
    CHECK(t.features(0, 1) == 2.0f);
    CHECK(t.feature_names == std::vector<std::string>{"a", "b"});
  }
  SECTION("negative target index counts from the end") {
    auto t = ld::parse_csv("a,b,c\n1,2,3\n", {.target = -2});
    CHECK(t.target(0) == 2.0f);
  }
  SECTION("no target") {
    auto t = ld::parse_csv("a,b\n1,2\n3,4", {.target = std::nullopt});
    CHECK(t.features.shape() == lepton::shape_t<2>{2, 2});
    CHECK(t.target.size() == 0);
    CHECK(t.target_name.empty());
  }
  SECTION("tabs, and spaces around fields") {
    auto t = ld::parse_csv("x\ty\n 1.5 \t -2 \n", {.delimiter = '\t'});
    CHECK(t.features(0, 0) == 1.5f);
    CHECK(t.target(0) == -2.0f);
  }
  SECTION("header only") {
    auto t = ld::parse_csv("a,b,c\n");
    CHECK(t.rows() == 0);
    CHECK(t.features.shape() == lepton::shape_t<2>{0, 2});
  }
  SECTION("byte order mark") {
    auto t = ld::parse_csv("\xEF\xBB\xBFx,y\n1,2\n");
    CHECK(t.feature_names == std::vector<std::string>{"x"});
  }
}

TEST_CASE("read_csv handles quoted fields", "[data][csv]") {
  auto t = ld::parse_csv("\"width, cm\",\"say \"\"hi\"\"\",\"multi\nline\"\n\"1.5\", \"2\" ,3\n");
  CHECK(t.feature_names == std::vector<std::string>{"width, cm", "say \"hi\""});
  CHECK(t.target_name == "multi\nline");
  CHECK(t.features(0, 0) == 1.5f);
  CHECK(t.features(0, 1) == 2.0f);
  CHECK(t.target(0) == 3.0f);
}

TEST_CASE("read_csv errors name the file, line and column", "[data][csv]") {
  temp_dir dir;
  auto p = dir / "bad.csv";
  auto expect = [&](std::string const& text, std::string const& what, ld::csv_options const& opt = {}) {
    write_text(p, text);
    LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, opt), lepton::format_error, p.string(), what);
  };
  expect("a,b,c\n1,2,3\n4,5\n", "line 3: 2 fields, expected 3 (as in the header on line 1)");
  expect("a,b,c\n1,2,3\n4,5,6,7\n", "line 3: 4 fields, expected 3");
  expect("1,2\n3\n", "line 2: 1 fields, expected 2 (as on the first row on line 1)", {.header = false});
  expect("a,b,c\n1,2,3\n\n4,x7,6\n", "line 4, column 2 (\"b\"): \"x7\" is not a number");
  expect("a,b\n1,2\n3,\n", "line 3, column 2 (\"b\"): empty field");
  expect("a,b\n1,2\n1e99,2\n", "line 3, column 1 (\"a\"): \"1e99\" is out of range for float");
  expect("a,b\n1,\"2\n", "line 2, column 2: unterminated quoted field");
  expect("a,b\n1,\"2\"x\n", "line 2, column 2: unexpected character 'x' after a closing quote");
  expect("a,b\n1,2 3\n", "line 2, column 2 (\"b\"): \"2 3\" is not a number");
  expect("", "empty file");
  expect("\n\n", "empty file", {.header = false});

  write_text(p, "a,b\n1,2\n");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, {.target = 2}), lepton::value_error, p.string(),
                             "target column 2 is out of range for 2 columns");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, {.target_name = "y"}), lepton::value_error, p.string(),
                             "no column named \"y\" in the header (columns: a, b)");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, {.header = false, .target_name = "y"}), lepton::value_error,
                             p.string(), "needs a header row");

  auto missing = dir / "missing.csv";
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(missing), lepton::io_error, missing.string(),
                             "No such file or directory");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(dir.path()), lepton::io_error, dir.path().string(),
                             "is a directory");
}

TEST_CASE("read_csv: csv_options::max_line_bytes caps a record, naming the file and the line",
          "[data][csv]") {
  temp_dir dir;
  auto p = dir / "long.csv";
  write_text(p, "a,b\n1,2\n33,44\n5,6\n");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, {.max_line_bytes = 4}), lepton::format_error,
                             p.string() + ": line 3",
                             "the record is longer than csv_options::max_line_bytes = 4 bytes");
  CHECK(ld::read_csv(p, {.max_line_bytes = 5}).rows() == 3); // "33,44" is 5 bytes; line ends do not count
  // The header counts too; a quoted record spanning lines counts all of them and is named by its first.
  LEPTON_CHECK_THROWS_NAMING(ld::parse_csv("abc,d\n1,2\n", {.max_line_bytes = 4}, "h.csv"),
                             lepton::format_error, "h.csv: line 1", "max_line_bytes = 4");
  LEPTON_CHECK_THROWS_NAMING(ld::parse_csv("a,b\n1,\"2\n3\n4\"\n", {.max_line_bytes = 6}, "q.csv"),
                             lepton::format_error, "q.csv: line 2", "max_line_bytes = 6");
  // Blank lines and CRLF line ends are not part of a record.
  CHECK(ld::parse_csv("a,b\r\n\r\n\r\n1,2\r\n", {.max_line_bytes = 3}).rows() == 1);
  // A generated long line: the default cap is 1 MiB.
  std::string const line = "7" + std::string((std::size_t{1} << 20) - 1, ' '); // exactly 1 MiB
  write_text(p, "a\n" + line + "\n");
  auto t = ld::read_csv(p, {.target = std::nullopt});
  REQUIRE(t.rows() == 1);
  CHECK(t.features(0, 0) == 7.0f);
  write_text(p, "a\n1\n" + line + " \n");
  LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p, {.target = std::nullopt}), lepton::format_error,
                             p.string() + ": line 3", "max_line_bytes = 1048576");
}

TEST_CASE("read_csv rejects NaN and infinite cells by default, naming the file, row and column",
          "[data][csv]") {
  temp_dir dir;
  auto p = dir / "nonfinite.csv";
  for (std::string cell : {"nan", "NaN", "NAN", "-nan", "inf", "-inf", "+inf", "INF", "Infinity", "-Infinity",
                           "infinity", " inf ", "\"nan\""}) {
    INFO("cell " << cell);
    write_text(p, "x,y,label\n1,2,0\n\n3," + cell + ",1\n");
    LEPTON_CHECK_THROWS_NAMING(ld::read_csv(p), lepton::format_error,
                               p.string() + ": line 4, column 2 (\"y\")",
                               "in data row 2 is not a finite number");
  }
  // In the target column, and without a header.
  LEPTON_CHECK_THROWS_NAMING(ld::parse_csv("1,2\n3,inf\n", {.header = false}, "t.csv"), lepton::format_error,
                             "t.csv: line 2, column 2", "\"inf\" in data row 2 is not a finite number");
  // The message says how to accept them.
  LEPTON_CHECK_THROWS_NAMING(ld::parse_csv("a\nnan\n", {.target = std::nullopt}, "m.csv"),
                             lepton::format_error, "m.csv: line 2, column 1 (\"a\")",
                             "csv_options::allow_non_finite");
  // A ragged row is still reported as such.
  LEPTON_CHECK_THROWS_NAMING(ld::parse_csv("a,b\nnan\n", {}, "r.csv"), lepton::format_error, "r.csv: line 2",
                             "1 fields, expected 2");
}

TEST_CASE("read_csv: csv_options::allow_non_finite accepts NaN and infinities", "[data][csv]") {
  temp_dir dir;
  auto p = dir / "nonfinite.csv";
  write_text(p, "x,y,label\n1,nan,0\n-Infinity,INF,1\n");
  auto t = ld::read_csv(p, {.allow_non_finite = true});
  REQUIRE(t.rows() == 2);
  CHECK(std::isnan(t.features(0, 1)));
  CHECK(std::isinf(t.features(1, 0)));
  CHECK(t.features(1, 0) < 0);
  CHECK(t.features(1, 1) == std::numeric_limits<float>::infinity());
  CHECK(t.target(1) == 1.0f);
  // Still a number or nothing: out-of-range literals and words stay errors.
  LEPTON_CHECK_THROWS_NAMING(
      ld::parse_csv("a\n1e99\n", {.target = std::nullopt, .allow_non_finite = true}, "o.csv"),
      lepton::format_error, "o.csv: line 2", "out of range for float");
  LEPTON_CHECK_THROWS_NAMING(
      ld::parse_csv("a\nnanx\n", {.target = std::nullopt, .allow_non_finite = true}, "o.csv"),
      lepton::format_error, "o.csv: line 2", "is not a number");
}

TEST_CASE("read_csv streams the file: records across chunk boundaries", "[data][csv]") {
  // 64 KiB chunks: records, quoted fields, CRLF pairs and a BOM must not care where a chunk ends.
  temp_dir dir;
  auto p = dir / "chunks.csv";
  std::string text = "\xEF\xBB\xBF"
                     "a,\"b\"\r\n";
  std::size_t rows = 0;
  while (text.size() < (std::size_t{3} << 16)) {
    text += std::to_string(rows) + ",\"" + std::to_string(rows % 7) + "\"\r\n";
    ++rows;
  }
  write_text(p, text);
  auto t = ld::read_csv(p);
  auto m = ld::parse_csv(text);
  REQUIRE(t.rows() == rows);
  REQUIRE(m.rows() == rows);
  CHECK(t.feature_names == std::vector<std::string>{"a"});
  CHECK(t.target_name == "b");
  for (std::size_t r = 0; r < rows; r += 997) {
    CHECK(t.features(r, 0) == static_cast<float>(r));
    CHECK(t.target(r) == static_cast<float>(r % 7));
  }
  CHECK(std::equal(t.features.data(), t.features.data() + t.features.size(), m.features.data()));
}

TEST_CASE("to_labels rejects non-integer targets", "[data][csv]") {
  auto t = ld::parse_csv("x,y\n1,0\n2,1.5\n");
  LEPTON_CHECK_THROWS_NAMING(ld::to_labels(t.target), lepton::value_error, "to_labels", "1.5");
  auto big = ld::parse_csv("x,y\n1,3e9\n");
  CHECK_THROWS_AS(ld::to_labels(big.target), lepton::value_error);
}
