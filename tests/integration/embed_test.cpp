// The README's embedding example is a real program: it must build, run against the test
// guest, and print what the README says it prints.
#include <gtest/gtest.h>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

TEST(EmbedIntegrationTest, ReadmeExampleStartsPausesAndStopsTheGuest) {
  QVM_REQUIRE_TEST_GUEST();
  testing::TempDir dir;
  auto profile = testing::write_guest_profile(dir, testing::guest("embedded"));
  auto result = testing::run_command({QVM_EXAMPLE_BINARY, (dir / "state").string(), profile.string()},
                                     {{"QVM_BINARY", testing::qvm_binary().string()}}, "",
                                     std::chrono::seconds(240));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "embedded is running\n"
            "event: STOP\n"
            "embedded is paused\n"
            "stopped by acpi (host request)\n");
}

TEST(EmbedTest, ReadmeShowsTheExampleVerbatim) {
  std::string readme = testing::read_file(std::string(QVM_SOURCE_DIR) + "/README.md");
  std::string example = testing::read_file(std::string(QVM_SOURCE_DIR) + "/examples/embed.cpp");
  EXPECT_NE(readme.find(example), std::string::npos)
      << "README.md must contain examples/embed.cpp exactly, so the documented code is tested";
}

}  // namespace
}  // namespace qvm
