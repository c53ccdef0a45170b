#include "support/test_guest.hpp"

#include <fstream>
#include <sstream>
#include <thread>

namespace qvm::testing {
namespace fs = std::filesystem;

fs::path guest_kernel() { return fs::path(QVM_TEST_GUEST_DIR) / "vmlinuz"; }
fs::path guest_initrd() { return fs::path(QVM_TEST_GUEST_DIR) / "initrd.img"; }

bool guest_available() { return fs::exists(guest_kernel()) && fs::exists(guest_initrd()); }

fs::path write_guest_profile(const TempDir& dir, const GuestProfile& options) {
  std::ostringstream text;
  text << "name = \"" << options.name << "\"\n"
       << "memory = \"" << options.memory << "\"\n"
       << "accel = \"tcg\"\n"
       << options.top_toml << "\n"
       << "[boot]\n"
       << "kernel = \"" << guest_kernel().string() << "\"\n"
       << "initrd = \"" << guest_initrd().string() << "\"\n"
       << "cmdline = \"console=ttyS0 quiet " << options.cmdline_extra << "\"\n";
  if (options.wait_serial) {
    text << "[ready]\nserial = \"" << kGuestReady << "\"\ntimeout = 180\n";
  }
  text << options.extra_toml << "\n";
  return dir.write(options.name + ".toml", text.str());
}

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return predicate();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int count_in_file(const fs::path& file, const std::string& needle) {
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

}  // namespace qvm::testing
