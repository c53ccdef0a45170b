// The library's view of a defined VM, without QEMU: what it reads back from the VM's folder.
#include <gtest/gtest.h>

#include <fstream>

#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

// events.jsonl is appended line by line; a full disk can cut a line short, and people edit
// files. Neither may make journal() or wait_for_event() throw.
TEST(InventoryTest, JournalSkipsLinesThatAreNotEvents) {
  testing::TempDir dir;
  auto inventory = Inventory::open(dir / "state");
  EverythingExists files;
  Vm vm = inventory->define(parse_profile("name = \"j\"\n", dir / "j.toml", {{}, std::nullopt, &files}));
  std::ofstream(dir / "state" / "vms" / "j" / "events.jsonl")
      << R"({"event": "QVM_START", "data": {}})" << "\n"
      << "5\n"
      << R"(["QVM_READY"])" << "\n"
      << R"({"event": 7})" << "\n"
      << R"({"no": "event"})" << "\n"
      << R"({"event": "QVM_READY", "data": {"how": "QMP ready"}})" << "\n"
      << R"({"event": "QVM_EX)";

  const auto entries = vm.journal();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["event"], "QVM_START");
  EXPECT_EQ(entries[1]["event"], "QVM_READY");
  EXPECT_EQ(vm.wait_for_event("QVM_READY", 0, 0ms).value_or(nullptr)["data"]["how"], "QMP ready");
  EXPECT_FALSE(vm.wait_for_event("QVM_EXIT", 0, 0ms));
}

}  // namespace
}  // namespace qvm
