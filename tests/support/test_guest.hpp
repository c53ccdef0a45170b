#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"

namespace qvm::testing {

/// The guest scripts/make-test-guest.sh built (QVM_TEST_GUEST_DIR). Integration tests call
/// this first; a missing guest fails the test with the command that builds it.
std::filesystem::path guest_kernel();
std::filesystem::path guest_initrd();
bool guest_available();
#define QVM_REQUIRE_TEST_GUEST()                                                             \
  ASSERT_TRUE(::qvm::testing::guest_available())                                             \
      << "no test guest in " QVM_TEST_GUEST_DIR "; run scripts/make-test-guest.sh " \
         QVM_TEST_GUEST_DIR

/// The line the guest prints on its serial console once its shell runs.
inline constexpr const char* kGuestReady = "qvm-test-guest: ready";

/// Options for a test-guest profile.
struct GuestProfile {
  std::string name = "guest";
  std::string cmdline_extra;     // e.g. "qvm.acpi=ignore"
  bool wait_serial = true;       // [ready] serial = the ready line
  std::string extra_toml;        // appended verbatim (disks, shutdown...)
  std::string memory = "256MiB";
  std::string top_toml;          // top-level keys (before any table), e.g. "agent = true"

  GuestProfile& cmdline(std::string extra) { cmdline_extra = std::move(extra); return *this; }
  GuestProfile& no_ready_wait() { wait_serial = false; return *this; }
  GuestProfile& toml(std::string text) { extra_toml = std::move(text); return *this; }
  GuestProfile& mem(std::string size) { memory = std::move(size); return *this; }
  GuestProfile& top(std::string text) { top_toml = std::move(text); return *this; }
};

/// A test-guest profile named `name` with every default.
inline GuestProfile guest(std::string name) {
  GuestProfile profile;
  profile.name = std::move(name);
  return profile;
}

/// Writes a profile for the test guest (TCG, direct kernel boot) into `dir`; returns its path.
std::filesystem::path write_guest_profile(const TempDir& dir, const GuestProfile& options);

/// Polls `predicate` every 100 ms until it is true or `timeout` passes; returns its last value.
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout);

/// How many times `needle` occurs in the file (0 if it is missing).
int count_in_file(const std::filesystem::path& file, const std::string& needle);

}  // namespace qvm::testing
