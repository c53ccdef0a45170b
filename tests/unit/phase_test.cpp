#include "supervisor/phase.hpp"

#include <gtest/gtest.h>

namespace qvm::supervisor {
namespace {

const Phase kAll[] = {
    Phase::idle,           Phase::launching, Phase::connecting, Phase::reattaching, Phase::resuming,
    Phase::awaiting_ready, Phase::running,   Phase::stopping,   Phase::restarting,  Phase::exited};

TEST(PhaseTest, AStartGoesThroughEveryPhaseOfItInOrder) {
  EXPECT_TRUE(transition_allowed(Phase::idle, Phase::launching));
  EXPECT_TRUE(transition_allowed(Phase::launching, Phase::connecting));
  EXPECT_TRUE(transition_allowed(Phase::connecting, Phase::resuming));
  EXPECT_TRUE(transition_allowed(Phase::resuming, Phase::awaiting_ready));
  EXPECT_TRUE(transition_allowed(Phase::awaiting_ready, Phase::running));
  EXPECT_TRUE(transition_allowed(Phase::resuming, Phase::running));  // ready at QMP
}

TEST(PhaseTest, AStartCannotSkipQemuOrItsMonitor) {
  EXPECT_FALSE(transition_allowed(Phase::idle, Phase::running));
  EXPECT_FALSE(transition_allowed(Phase::launching, Phase::running));
  EXPECT_FALSE(transition_allowed(Phase::launching, Phase::resuming));
  EXPECT_FALSE(transition_allowed(Phase::connecting, Phase::awaiting_ready));
  EXPECT_FALSE(transition_allowed(Phase::connecting, Phase::running));
  EXPECT_FALSE(transition_allowed(Phase::running, Phase::awaiting_ready));
}

TEST(PhaseTest, AReattachedQemuIsRunningOrFinishesItsStart) {
  EXPECT_TRUE(transition_allowed(Phase::idle, Phase::reattaching));
  EXPECT_TRUE(transition_allowed(Phase::reattaching, Phase::running));
  EXPECT_TRUE(transition_allowed(Phase::reattaching, Phase::resuming));
  EXPECT_FALSE(transition_allowed(Phase::reattaching, Phase::launching));  // never a second QEMU
  EXPECT_FALSE(transition_allowed(Phase::running, Phase::reattaching));
}

TEST(PhaseTest, EveryPhaseWithAQemuCanStopItOrSeeItExit) {
  for (Phase phase : {Phase::connecting, Phase::reattaching, Phase::resuming, Phase::awaiting_ready,
                      Phase::running}) {
    EXPECT_TRUE(transition_allowed(phase, Phase::stopping)) << to_string(phase);
    EXPECT_TRUE(transition_allowed(phase, Phase::exited)) << to_string(phase);
    EXPECT_TRUE(transition_allowed(phase, Phase::restarting)) << to_string(phase);
  }
  EXPECT_FALSE(transition_allowed(Phase::idle, Phase::stopping));
  EXPECT_FALSE(transition_allowed(Phase::launching, Phase::stopping));  // no QEMU yet
  EXPECT_FALSE(transition_allowed(Phase::restarting, Phase::stopping));
}

TEST(PhaseTest, AVmStoppedOnPurposeIsNotRestarted) {
  EXPECT_TRUE(transition_allowed(Phase::stopping, Phase::exited));
  EXPECT_FALSE(transition_allowed(Phase::stopping, Phase::restarting));
  EXPECT_FALSE(transition_allowed(Phase::stopping, Phase::running));
  EXPECT_TRUE(transition_allowed(Phase::restarting, Phase::launching));
  EXPECT_FALSE(transition_allowed(Phase::restarting, Phase::running));
}

TEST(PhaseTest, ExitedIsTheEndAndNoPhaseMovesToItself) {
  for (Phase to : kAll) EXPECT_FALSE(transition_allowed(Phase::exited, to)) << to_string(to);
  for (Phase phase : kAll) EXPECT_FALSE(transition_allowed(phase, phase)) << to_string(phase);
  for (Phase from : kAll) EXPECT_FALSE(transition_allowed(from, Phase::idle)) << to_string(from);
}

TEST(PhaseTest, TheStartingPhasesAreThoseFromSpawnToReady) {
  EXPECT_TRUE(is_starting(Phase::launching));
  EXPECT_TRUE(is_starting(Phase::connecting));
  EXPECT_TRUE(is_starting(Phase::resuming));
  EXPECT_TRUE(is_starting(Phase::awaiting_ready));
  EXPECT_FALSE(is_starting(Phase::reattaching));
  EXPECT_FALSE(is_starting(Phase::running));
  EXPECT_FALSE(is_starting(Phase::stopping));
}

TEST(PhaseTest, NamesAreTheJournalsWords) {
  EXPECT_EQ(to_string(Phase::awaiting_ready), "awaiting-ready");
  EXPECT_EQ(to_string(Phase::reattaching), "reattaching");
  EXPECT_EQ(to_string(Phase::exited), "exited");
}

}  // namespace
}  // namespace qvm::supervisor
