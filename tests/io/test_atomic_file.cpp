// Atomic writes: injected failures at every stage leave the previous file intact and no temporary
// file behind; targets that are not regular files are refused; stale temporaries are cleaned up.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

namespace atomic_test {
namespace lio = lepton::io;
using io_test::scratch_dir;

inline std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::byte((i * 131 + seed) & 0xff);
  return b;
}
} // namespace atomic_test

TEST_CASE("atomic write replaces the file and leaves no temporary", "[io]") {
  using namespace atomic_test;
  scratch_dir dir;
  auto p = dir / "f.bin";
  lio::write_file_atomic(p, pattern(1000, 1));
  CHECK(io_test::read_bytes(p) == pattern(1000, 1));
  lio::write_file_atomic(p, pattern(10, 2));
  CHECK(io_test::read_bytes(p) == pattern(10, 2));
  lio::write_file_atomic(p, {}, {.durable = false});
  CHECK(io_test::read_bytes(p).empty());
  CHECK(dir.count_files() == 1);

  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  mode_t um = ::umask(0);
  ::umask(um);
  CHECK((st.st_mode & 0777) == (0644 & ~um));

  // a relative path (the directory is ".")
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  lio::write_file_atomic("rel.bin", pattern(5, 3));
  std::filesystem::current_path(cwd);
  CHECK(io_test::read_bytes(dir / "rel.bin") == pattern(5, 3));
}

TEST_CASE("a failure at any stage of an atomic write keeps the previous file and removes the temporary",
          "[io]") {
  using namespace atomic_test;
  using lio::testing::scoped_write_faults;
  scratch_dir dir;
  auto p = dir / "model.safetensors";
  auto const old = pattern(5000, 7);
  lio::write_file_atomic(p, old);
  std::string const prefix = lio::temp_prefix(p);

  auto check_intact = [&] {
    CHECK(io_test::read_bytes(p) == old);
    CHECK(dir.count_prefix(prefix) == 0);
    CHECK(dir.count_files() == 1);
  };

  SECTION("disk full in the middle of a write, at many points") {
    for (std::size_t limit : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4095},
                              std::size_t{4096}, std::size_t{9999}}) {
      scoped_write_faults f({.fail_after_bytes = limit});
      try {
        lio::write_file_atomic(p, pattern(10000, 9));
        FAIL("no exception");
      } catch (lepton::io_error const& e) {
        std::string msg = e.what();
        CHECK(msg.find(p.string()) != std::string::npos);
        CHECK(msg.find("No space left on device") != std::string::npos);
      }
      check_intact();
    }
  }
  SECTION("an injected EIO through save_safetensors") {
    lepton::tensor<float, 64, 64> w;
    scoped_write_faults f({.fail_after_bytes = 3000, .error = EIO});
    CHECK_THROWS_WITH(lio::save_safetensors(p, {lio::ref("w", w)}), Catch::Contains("Input/output error"));
    check_intact();
  }
  SECTION("an injected failure through save_npz and save_npy") {
    lepton::tensor<double, 10, 10> w;
    scoped_write_faults f({.fail_after_bytes = 200});
    CHECK_THROWS_AS(lio::save_npz(p, {lio::ref("w", w)}), lepton::io_error);
    CHECK_THROWS_AS(lio::save_npy(p, w), lepton::io_error);
    check_intact();
  }
  SECTION("temporary file cannot be created") {
    scoped_write_faults f({.error = EACCES, .fail_create = true});
    CHECK_THROWS_WITH(lio::write_file_atomic(p, pattern(10, 1)), Catch::Contains("Permission denied"));
    check_intact();
  }
  SECTION("fsync fails") {
    scoped_write_faults f({.error = EIO, .fail_fsync = true});
    CHECK_THROWS_WITH(lio::write_file_atomic(p, pattern(10, 1)), Catch::Contains("fsync"));
    check_intact();
  }
  SECTION("rename fails") {
    scoped_write_faults f({.error = EXDEV, .fail_rename = true});
    CHECK_THROWS_WITH(lio::write_file_atomic(p, pattern(10, 1)), Catch::Contains("rename"));
    check_intact();
  }
  SECTION("directory fsync fails after the rename: reported, the new file is in place") {
    scoped_write_faults f({.error = EIO, .fail_dir_fsync = true});
    CHECK_THROWS_AS(lio::write_file_atomic(p, pattern(10, 1)), lepton::io_error);
    CHECK(io_test::read_bytes(p) == pattern(10, 1));
    CHECK(dir.count_files() == 1);
  }
  SECTION("the writer is abandoned without commit") {
    {
      lio::atomic_writer w(p);
      w.write(pattern(100, 3));
      CHECK(std::filesystem::exists(w.temp_path()));
      CHECK(dir.count_prefix(prefix) == 1);
    }
    check_intact();
  }
  SECTION("faults are per scope") {
    { scoped_write_faults f({.fail_rename = true}); }
    lio::write_file_atomic(p, pattern(10, 4));
    CHECK(io_test::read_bytes(p) == pattern(10, 4));
  }
}

TEST_CASE("saving to /dev/full, a directory or a missing directory raises io_error", "[io]") {
  using namespace atomic_test;
  lepton::tensor<float, 8> t;
  SECTION("/dev/full") {
    if (!std::filesystem::exists("/dev/full")) {
      WARN("no /dev/full on this machine");
      return;
    }
    auto count_dev_temps = [] {
      std::size_t n = 0;
      for (auto const& e : std::filesystem::directory_iterator("/dev"))
        if (e.path().filename().string().rfind(".full.lepton-tmp.", 0) == 0) ++n;
      return n;
    };
    try {
      lio::save_safetensors("/dev/full", {lio::ref("t", t)});
      FAIL("no exception");
    } catch (lepton::io_error const& e) {
      CHECK(std::string(e.what()).find("/dev/full") != std::string::npos);
      CHECK(std::string(e.what()).find("not a regular file") != std::string::npos);
    }
    CHECK_THROWS_AS(lio::save_npz("/dev/full", {lio::ref("t", t)}), lepton::io_error);
    CHECK_THROWS_AS(lio::save_npy("/dev/full", t), lepton::io_error);
    CHECK(count_dev_temps() == 0);
    // and loading from a device is refused without blocking
    CHECK_THROWS_WITH(lio::load_safetensors("/dev/zero"), Catch::Contains("not a regular file"));
  }
  SECTION("directory and missing paths") {
    io_test::scratch_dir dir;
    std::filesystem::create_directory(dir / "sub");
    CHECK_THROWS_WITH(lio::save_safetensors(dir / "sub", {lio::ref("t", t)}),
                      Catch::Contains("is a directory"));
    CHECK_THROWS_WITH(lio::save_safetensors(dir / "nope" / "m.safetensors", {lio::ref("t", t)}),
                      Catch::Contains("No such file or directory"));
    CHECK_THROWS_AS(lio::save_safetensors(dir.path().string() + "/", {lio::ref("t", t)}), lepton::io_error);
    CHECK(dir.count_files() == 1);
  }
}

TEST_CASE("a target name near the file system's limit still gets a temporary file", "[io]") {
  using namespace atomic_test;
  io_test::scratch_dir dir;
  std::string const name(250, 'n');
  lio::write_file_atomic(dir / name, pattern(10, 1));
  CHECK(io_test::read_bytes(dir / name) == pattern(10, 1));
  CHECK(lio::temp_prefix(dir / name).size() < 140);
  CHECK(dir.count_files() == 1);
}

TEST_CASE("a symbolic link at the target is replaced, not followed", "[io]") {
  using namespace atomic_test;
  io_test::scratch_dir dir;
  lio::write_file_atomic(dir / "real.bin", pattern(10, 1));
  std::filesystem::create_symlink(dir / "real.bin", dir / "link.bin");
  lio::write_file_atomic(dir / "link.bin", pattern(20, 2));
  CHECK(!std::filesystem::is_symlink(dir / "link.bin"));
  CHECK(io_test::read_bytes(dir / "link.bin") == pattern(20, 2));
  CHECK(io_test::read_bytes(dir / "real.bin") == pattern(10, 1));
}

TEST_CASE("a later save removes temporaries of dead writers only", "[io]") {
  using namespace atomic_test;
  io_test::scratch_dir dir;
  auto p = dir / "ckpt.safetensors";
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child); // `child` is now a pid with no process
  std::string const prefix = lio::temp_prefix(p);
  auto dead = dir / (prefix + std::to_string(child) + ".0123456789ab");
  auto alive = dir / (prefix + std::to_string(::getppid()) + ".0123456789ab");
  auto mine = dir / (prefix + std::to_string(::getpid()) + ".0123456789ab");
  auto other = dir / (".other.lepton-tmp." + std::to_string(child) + ".0123456789ab");
  for (auto const& f : {dead, alive, mine, other}) io_test::write_text(f, "partial");

  lio::write_file_atomic(p, pattern(10, 1), {.remove_stale_temps = false});
  CHECK(std::filesystem::exists(dead));
  lio::write_file_atomic(p, pattern(10, 1));
  CHECK(!std::filesystem::exists(dead)); // its writer is gone
  CHECK(std::filesystem::exists(alive)); // a live process may still be writing it
  CHECK(std::filesystem::exists(mine));  // this process's own (another thread may be writing it)
  CHECK(std::filesystem::exists(other)); // another target's
  CHECK(io_test::read_bytes(p) == pattern(10, 1));
}
