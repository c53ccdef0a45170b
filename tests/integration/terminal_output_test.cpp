// What `qvm console` shows on a terminal of what the guest sends: the real guest's shell
// prints escape sequences, and only --raw or a pipe lets them through.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/cli_runner.hpp"
#include "support/state_dir_test.hpp"
#include "support/terminal_runner.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

using namespace std::chrono_literals;

class TerminalOutputIntegrationTest : public testing::StateDirTest {
 protected:
  std::vector<std::string> qvm_argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {testing::qvm_binary().string(), "--state-dir", state_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

TEST_F(TerminalOutputIntegrationTest, ConsoleOnATerminalShowsTheGuestsEscapeSequences) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", testing::write_guest_profile(dir_, testing::guest("esc")).string()}).exit_code, 0);
  // The command line the shell echoes holds no ESC; only what printf prints does.
  const std::string command = "printf 'mark-\\033[31mred\\033]0;title\\007-\\302\\233-end\\n'\n";
  const std::string shown_text = "mark-^[[31mred^[]0;title^G-\\xc2\\x9b-end";
  const std::string raw_text = "mark-\x1b[31mred\x1b]0;title\x07-\xc2\x9b-end";

  const auto shown = testing::run_on_terminal(qvm_argv({"console", "esc"}), command, 60s);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find(shown_text), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find('\x1b'), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find("\xc2\x9b"), std::string::npos) << shown.out;

  const auto raw = testing::run_on_terminal(qvm_argv({"console", "--raw", "esc"}), command, 60s);
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_NE(raw.out.find(raw_text), std::string::npos) << raw.out;

  const auto piped = testing::qvm(state_, {"console", "esc"}, 60s, command);
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_NE(piped.out.find(raw_text), std::string::npos) << piped.out;

  // The serial log has the bytes as the guest sent them; `logs` shows them like the console.
  const auto logs = testing::run_on_terminal(qvm_argv({"logs", "esc"}));
  EXPECT_NE(logs.out.find(shown_text), std::string::npos) << logs.out;
  EXPECT_NE(qvm({"logs", "esc"}).out.find(raw_text), std::string::npos);
  ASSERT_EQ(qvm({"kill", "esc"}).exit_code, 0);
}

}  // namespace
}  // namespace qvm
