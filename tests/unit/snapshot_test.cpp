// The snapshot tree against a fake qemu-img (an in-memory backing-chain graph) and, for the
// live paths, a FakeQmpServer. No QEMU runs here.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <mutex>

#include "snapshot/snapshot.hpp"
#include "store/files.hpp"
#include "store/snapshot_meta.hpp"
#include "support/fake_qmp_server.hpp"
#include "support/temp_dir.hpp"

namespace qvm::snapshot {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FakeQmpServer;
using testing::FakeReply;

// The first bytes of every qcow2 image: what qvm checks before it deletes one.
const std::string kQcow2Header("QFI\xfb\0\0\0\3", 8);

// qemu-img as far as the snapshot code can tell: files exist on disk (empty), and their
// backing files live in a map. Every call is recorded.
class FakeQemuImg {
 public:
  std::map<fs::path, std::optional<fs::path>> backing;
  std::vector<std::vector<std::string>> calls;
  std::string fail_on;  // a subcommand ("create", "rebase") that fails

  host::ProgramRunner runner() {
    return [this](const std::vector<std::string>& argv) { return run(argv); };
  }

  host::ProgramOutput run(const std::vector<std::string>& argv) {
    calls.push_back(argv);
    const std::string& verb = argv.at(1);
    if (verb == fail_on) return {1, "qemu-img: " + verb + " failed on purpose"};
    auto flag = [&](const std::string& name) -> std::optional<std::string> {
      for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
        if (argv[i] == name) return argv[i + 1];
      }
      return std::nullopt;
    };
    if (verb == "create") {
      // qemu-img create ... [-b B -F F] FILE [SIZE]: FILE is the last or next-to-last word.
      fs::path file = argv.back();
      if (std::isdigit(static_cast<unsigned char>(file.string()[0]))) file = argv[argv.size() - 2];
      std::ofstream(file) << kQcow2Header;
      backing[file] = flag("-b") ? std::optional<fs::path>(*flag("-b")) : std::nullopt;
      return {0, ""};
    }
    if (verb == "rebase") {
      backing[argv.back()] = fs::path(*flag("-b"));
      return {0, ""};
    }
    if (verb == "info") {
      nlohmann::json info = {{"format", "qcow2"}};
      auto it = backing.find(argv.back());
      if (it != backing.end() && it->second) info["full-backing-filename"] = it->second->string();
      return {0, info.dump()};
    }
    return {1, "unexpected qemu-img call"};
  }
};

class SnapshotTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = dir_.write("base.qcow2", "base");
    data_ = dir_.write("data.qcow2", "data");
    profile_.name = "vm";
    profile_.disks.resize(2);
    profile_.disks[0].path = base_;
    profile_.disks[1].path = data_;
    store::make_private_dir(store_.paths("vm").state_dir);
  }

  SnapshotTree tree(std::optional<fs::path> qmp = std::nullopt) {
    Environment env;
    env.run = img_.runner();
    env.now = [] { return std::chrono::system_clock::from_time_t(1795510000); };
    env.qmp_socket = qmp;
    return SnapshotTree(store_, "vm", profile_, env);
  }

  store::SnapshotMeta meta() { return store::read_snapshot_meta(store_.paths("vm").state_dir); }

  testing::TempDir dir_;
  store::VmStore store_{dir_ / "state", dir_ / "run"};
  FakeQemuImg img_;
  Profile profile_;
  fs::path base_, data_;
};

TEST_F(SnapshotTreeTest, OfflineCreateFreezesEveryWritableDiskUnderANewOverlay) {
  auto record = tree().create("s1", "first", "stopped");
  EXPECT_EQ(record.name, "s1");
  EXPECT_EQ(record.created_at, "2026-11-24T08:46:40.000Z");
  ASSERT_EQ(record.disks.size(), 2u);
  EXPECT_EQ(record.disks[0].image, base_);
  EXPECT_EQ(record.disks[1].image, data_);
  auto m = meta();
  EXPECT_EQ(m.current, "s1");
  ASSERT_EQ(m.active.size(), 2u);
  EXPECT_EQ(img_.backing[m.active[0]], base_) << "the overlay sits on the frozen image";
  EXPECT_EQ(m.active[0].parent_path().filename(), "disks");
  // Absolute backing path and explicit backing format, as qemu-img was asked.
  EXPECT_EQ(img_.calls[0], (std::vector<std::string>{"qemu-img", "create", "-q", "-f", "qcow2", "-b",
                                                     base_.string(), "-F", "qcow2", m.active[0].string()}));
  EXPECT_TRUE(m.pending.is_null());
}

TEST_F(SnapshotTreeTest, ReadonlyDisksAreLeftOutAndRawWritableDisksRefused) {
  profile_.disks[1].readonly = true;
  auto record = tree().create("s1", "", "stopped");
  EXPECT_EQ(record.disks.size(), 1u);
  profile_.disks[1].readonly = false;
  profile_.disks[1].format = DiskFormat::raw;
  try {
    tree().create("s2", "", "stopped");
    FAIL() << "expected SnapshotError";
  } catch (const SnapshotError& e) {
    EXPECT_NE(std::string(e.what()).find("is a raw image, and snapshots need qcow2 disks"), std::string::npos);
  }
  EXPECT_FALSE(meta().find("s2"));
}

TEST_F(SnapshotTreeTest, NamesAreCheckedAndUnique) {
  EXPECT_THROW(tree().create("../x", "", "stopped"), SnapshotError);
  EXPECT_THROW(tree().create("", "", "stopped"), SnapshotError);
  EXPECT_THROW(tree().create(std::string(64, 'a'), "", "stopped"), SnapshotError);
  tree().create("ok.1_b-2", "", "stopped");
  EXPECT_THROW(tree().create("ok.1_b-2", "", "stopped"), SnapshotError);
  EXPECT_THROW(tree().revert("missing"), SnapshotError);
  EXPECT_THROW(tree().remove("missing"), SnapshotError);
}

TEST_F(SnapshotTreeTest, FailedQemuImgLeavesNothingHalfDone) {
  tree().create("s1", "", "stopped");
  auto before = meta();
  img_.fail_on = "create";
  EXPECT_THROW(tree().create("s2", "", "stopped"), SnapshotError);
  auto after = meta();
  EXPECT_EQ(after.active, before.active);
  EXPECT_EQ(after.snapshots, before.snapshots);
  EXPECT_TRUE(after.pending.is_null());
}

TEST_F(SnapshotTreeTest, RevertPutsFreshOverlaysOnTheFrozenImagesAndDropsLaterWrites) {
  tree().create("s1", "", "stopped");
  const fs::path after_s1 = meta().active.at(0);
  tree().create("s2", "", "stopped");
  const fs::path after_s2 = meta().active.at(0);
  tree().revert("s1");
  auto m = meta();
  EXPECT_EQ(m.current, "s1");
  EXPECT_EQ(img_.backing[m.active.at(0)], base_);
  EXPECT_NE(m.active.at(0), after_s1);
  // after_s1 is s2's frozen image: kept. after_s2 held writes after s2 that nothing needs.
  EXPECT_TRUE(fs::exists(after_s1));
  EXPECT_FALSE(fs::exists(after_s2));
  // Forward again to the newer one.
  tree().revert("s2");
  EXPECT_EQ(img_.backing[meta().active.at(0)], after_s1);
}

TEST_F(SnapshotTreeTest, RemovingTheMiddleOfAChainRebasesBothItsChildren) {
  tree().create("s1", "", "stopped");
  tree().create("s2", "", "stopped");
  tree().create("s3", "", "stopped");
  tree().revert("s2");
  auto m = meta();
  const fs::path f2 = m.find("s2")->disks[0].image;  // frozen at s2
  const fs::path f3 = m.find("s3")->disks[0].image;  // frozen at s3, sits on f2
  const fs::path active = m.active.at(0);            // sits on f2 too
  const fs::path below = img_.backing[f2].value();
  tree().remove("s2");
  m = meta();
  EXPECT_FALSE(m.find("s2"));
  EXPECT_FALSE(fs::exists(f2)) << "nothing needs the merged image any more";
  EXPECT_EQ(img_.backing[f3], below);
  EXPECT_EQ(img_.backing[active], below);
  EXPECT_EQ(m.current, "s1");
  EXPECT_EQ(m.find("s3")->parent, "s1");
  EXPECT_TRUE(m.pending.is_null());
}

TEST_F(SnapshotTreeTest, RemovingTheFirstSnapshotKeepsTheProfilesOwnDisk) {
  tree().create("s1", "", "stopped");
  tree().remove("s1");
  EXPECT_TRUE(fs::exists(base_));
  EXPECT_EQ(meta().snapshots.size(), 0u);
  EXPECT_EQ(img_.backing[meta().active.at(0)], base_);
}

TEST_F(SnapshotTreeTest, AnInterruptedRemoveIsFinishedByTheNextCommand) {
  tree().create("s1", "", "stopped");
  tree().create("s2", "", "stopped");
  // A remove that crashed right after recording its intent.
  auto m = meta();
  m.pending = {{"op", "remove"}, {"name", "s2"}};
  store::write_snapshot_meta(store_.paths("vm").state_dir, m);
  tree().remove("s2");  // the retry of the same command succeeds
  EXPECT_FALSE(meta().find("s2"));
  EXPECT_TRUE(meta().pending.is_null());
}

TEST_F(SnapshotTreeTest, AnInterruptedOfflineCreateIsCompletedWhenItsOverlaysExist) {
  tree().create("s1", "", "stopped");
  auto m = meta();
  const fs::path frozen = m.active.at(0);
  const fs::path overlay = store_.paths("vm").state_dir / "disks" / "disk0.99.qcow2";
  img_.run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", frozen.string(), "-F", "qcow2", overlay.string()});
  const fs::path frozen_data = m.active.at(1);
  const fs::path overlay_data = store_.paths("vm").state_dir / "disks" / "disk1.99.qcow2";
  img_.run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", frozen_data.string(), "-F", "qcow2", overlay_data.string()});
  m.pending = {{"op", "create"}, {"name", "s2"}, {"live", false},
               {"disks", {{"0", {{"overlay", overlay.string()}, {"frozen", frozen.string()}}},
                          {"1", {{"overlay", overlay_data.string()}, {"frozen", frozen_data.string()}}}}}};
  store::write_snapshot_meta(store_.paths("vm").state_dir, m);
  tree().recover();
  m = meta();
  ASSERT_TRUE(m.find("s2"));
  EXPECT_EQ(m.active.at(0), overlay);
  EXPECT_EQ(m.current, "s2");
}

TEST_F(SnapshotTreeTest, AnInterruptedLiveCreateWithQemuGoneKeepsTheOverlaysButNoSnapshot) {
  tree().create("s1", "", "stopped");
  auto m = meta();
  std::map<std::string, std::pair<fs::path, fs::path>> plan;
  nlohmann::json disks = nlohmann::json::object();
  for (auto [disk, frozen] : m.active) {
    const fs::path overlay = store_.paths("vm").state_dir / "disks" / ("disk" + std::to_string(disk) + ".77.qcow2");
    img_.run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", frozen.string(), "-F", "qcow2", overlay.string()});
    disks[std::to_string(disk)] = {{"overlay", overlay.string()}, {"frozen", frozen.string()}};
  }
  m.pending = {{"op", "create"}, {"name", "s2"}, {"live", true}, {"disks", disks}};
  store::write_snapshot_meta(store_.paths("vm").state_dir, m);
  tree().recover();
  m = meta();
  // QEMU may have written to the new overlays: running on them loses nothing, but the
  // snapshot itself cannot be vouched for.
  EXPECT_FALSE(m.find("s2"));
  EXPECT_EQ(m.active.at(0).filename(), "disk0.77.qcow2");
  EXPECT_TRUE(m.pending.is_null());
}

TEST_F(SnapshotTreeTest, LiveCreateIsOneTransactionOverEveryDisk) {
  FakeQmpServer qemu;
  qemu.expect("query-block", FakeReply::ok(nlohmann::json::array(
                                 {{{"qdev", "/machine/peripheral/disk0/virtio-backend"},
                                   {"inserted", {{"node-name", "disk0-format"}, {"file", base_.string()}}}},
                                  {{"qdev", "disk1"}, {"inserted", {{"node-name", "disk1-format"}, {"file", data_.string()}}}}})));
  const fs::path overlay0 = store_.paths("vm").state_dir / "disks" / "disk0.1.qcow2";
  const fs::path overlay1 = store_.paths("vm").state_dir / "disks" / "disk1.1.qcow2";
  nlohmann::json actions = nlohmann::json::array(
      {{{"type", "blockdev-snapshot-sync"},
        {"data", {{"node-name", "disk0-format"}, {"snapshot-file", overlay0.string()}, {"snapshot-node-name", "disk0-s1"},
                  {"format", "qcow2"}, {"mode", "absolute-paths"}}}},
       {{"type", "blockdev-snapshot-sync"},
        {"data", {{"node-name", "disk1-format"}, {"snapshot-file", overlay1.string()}, {"snapshot-node-name", "disk1-s1"},
                  {"format", "qcow2"}, {"mode", "absolute-paths"}}}}});
  qemu.expect("transaction", {{"actions", actions}}, FakeReply::ok());
  auto record = tree(qemu.socket_path()).create("live", "", "running");
  EXPECT_EQ(record.vm_state, "running");
  EXPECT_EQ(meta().active.at(0), overlay0);
  EXPECT_EQ(meta().active.at(1), overlay1);
  EXPECT_TRUE(img_.calls.empty()) << "a live snapshot is QEMU's job, not qemu-img's";
}

TEST_F(SnapshotTreeTest, LiveCreateRefusedByQemuChangesNothing) {
  FakeQmpServer qemu;
  qemu.expect("query-block", FakeReply::ok(nlohmann::json::array(
                                 {{{"qdev", "/machine/peripheral/disk0/virtio-backend"},
                                   {"inserted", {{"node-name", "disk0-format"}, {"file", base_.string()}}}},
                                  {{"qdev", "disk1"}, {"inserted", {{"node-name", "disk1-format"}, {"file", data_.string()}}}}})));
  qemu.expect("transaction", FakeReply::error("GenericError", "Could not create file: No space left on device"));
  try {
    tree(qemu.socket_path()).create("live", "", "running");
    FAIL() << "expected SnapshotError";
  } catch (const SnapshotError& e) {
    EXPECT_STREQ(e.what(), "snapshot \"live\" failed: QEMU refused it: Could not create file: No space left on device");
  }
  EXPECT_TRUE(meta().snapshots.empty());
  EXPECT_TRUE(meta().active.empty());
  EXPECT_TRUE(meta().pending.is_null());
}

TEST_F(SnapshotTreeTest, LiveRemoveStreamsIntoTheImageQemuHasOpen) {
  tree().create("s1", "", "stopped");
  tree().create("s2", "", "stopped");
  auto m = meta();
  const fs::path f2 = m.find("s2")->disks[0].image;
  const fs::path active = m.active.at(0);
  const fs::path f2_data = m.find("s2")->disks[1].image;
  const fs::path active_data = m.active.at(1);
  FakeQmpServer qemu;
  qemu.expect("query-named-block-nodes", FakeReply::ok(nlohmann::json::array({
      {{"node-name", "disk0-format"}, {"drv", "qcow2"}, {"file", active.string()}},
      {{"node-name", "n-f2"}, {"drv", "qcow2"}, {"file", f2.string()}},
      {{"node-name", "n-base"}, {"drv", "qcow2"}, {"file", base_.string()}},
      {{"node-name", "disk1-format"}, {"drv", "qcow2"}, {"file", active_data.string()}},
      {{"node-name", "n-f2d"}, {"drv", "qcow2"}, {"file", f2_data.string()}},
      {{"node-name", "n-data"}, {"drv", "qcow2"}, {"file", data_.string()}},
      {{"node-name", "disk0-storage"}, {"drv", "file"}, {"file", active.string()}}})));
  qemu.expect("block-stream", {{"job-id", "qvm-stream-1"}, {"device", "disk0-format"}, {"base-node", "n-base"}},
              FakeReply::ok().preceded_by(FakeQmpServer::event("BLOCK_JOB_COMPLETED", {{"device", "other-job"}, {"len", 1}, {"offset", 1}})));
  qemu.expect("block-stream", {{"job-id", "qvm-stream-2"}, {"device", "disk1-format"}, {"base-node", "n-data"}},
              FakeReply::ok());
  // The first stream's completion arrives after an unrelated job's.
  std::thread events([&] {
    qemu.wait_received(3, 5s);
    qemu.send_event("BLOCK_JOB_COMPLETED", {{"device", "qvm-stream-1"}, {"len", 100}, {"offset", 100}, {"type", "stream"}});
    qemu.wait_received(4, 5s);
    qemu.send_event("BLOCK_JOB_COMPLETED", {{"device", "qvm-stream-2"}, {"len", 100}, {"offset", 100}, {"type", "stream"}});
  });
  // Before the stream the active overlays sit on the images s2 froze.
  img_.backing[active] = f2;
  img_.backing[active_data] = f2_data;
  tree(qemu.socket_path()).remove("s2");
  events.join();
  m = meta();
  EXPECT_FALSE(m.find("s2"));
  EXPECT_FALSE(fs::exists(f2));
  // The active overlays now sit directly on what s1 froze.
  EXPECT_EQ(m.overlays.at(active.string()).backing, base_);
  EXPECT_EQ(m.overlays.at(active_data.string()).backing, data_);
}

TEST_F(SnapshotTreeTest, TreeRenderingMarksTheCurrentSnapshot) {
  tree().create("base", "clean install", "stopped");
  tree().create("tools", "", "running");
  tree().revert("base");
  tree().create("other", "", "stopped");
  std::string text = render_tree(meta());
  EXPECT_EQ(text,
            "base  2026-11-24T08:46:40.000Z  stopped  clean install\n"
            "|-- tools  2026-11-24T08:46:40.000Z  running\n"
            "`-- other *  2026-11-24T08:46:40.000Z  stopped\n"
            "* the VM runs on top of \"other\"\n");
  EXPECT_EQ(render_tree(store::SnapshotMeta{}), "no snapshots\n");
}

// A hand-edited or damaged record of an interrupted operation is refused with qvm's own
// error naming the entry and the fix, never with a library exception from deep inside the
// recovery that every start runs.
TEST(SnapshotMetaTest, MalformedPendingOperationIsRefusedByName) {
  testing::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("pending": [1])", "\"pending\" is not an object"},
      {R"("pending": {"op": 7, "name": "a"})", "\"pending\".op is not"},
      {R"("pending": {"op": "explode", "name": "a"})", "\"pending\".op is not"},
      {R"("pending": {"op": "create"})", "\"pending\".name is not a string"},
      {R"("pending": {"op": "create", "name": "a", "live": "yes"})", "\"pending\".live"},
      {R"("pending": {"op": "create", "name": "a", "disks": {"x": {"overlay": "o", "frozen": "f"}}})",
       "\"pending\".disks[\"x\"]"},
      {R"("pending": {"op": "revert", "name": "a", "disks": {"0": {"overlay": 3, "frozen": "f"}}})",
       "\"pending\".disks[\"0\"]"},
      {R"("pending": {"op": "revert", "name": "a", "disks": {"99999999999999999999": {"overlay": "o", "frozen": "f"}}})",
       "\"pending\".disks[\"99999999999999999999\"]"},
  };
  for (const auto& [pending, expected] : cases) {
    std::ofstream(dir / "snapshots.json") << "{\"version\": 1, " << pending << "}";
    try {
      store::read_snapshot_meta(dir.path());
      ADD_FAILURE() << "accepted " << pending;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("delete the \"pending\" entry"), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir / "snapshots.json")
      << R"({"version": 1, "pending": {"op": "create", "name": "a", "live": true, "disks": {"0": {"overlay": "o", "frozen": "f"}}}})";
  EXPECT_EQ(store::read_snapshot_meta(dir.path()).pending.value("name", ""), "a");
}

// snapshots.json can be edited or damaged. Whatever it names, recovery and every cleanup
// delete only qcow2 images inside the VM's folder that nothing needs; anything else is
// refused by path, and the file is left as it is.
class TamperedSnapshotMetaTest : public SnapshotTreeTest {
 protected:
  fs::path vm_dir() { return store_.paths("vm").state_dir; }

  // A pending create that crashed before its overlays existed: recovery undoes it by
  // deleting `overlay`.
  void plant_pending_create(const fs::path& overlay) {
    auto m = meta();
    m.pending = {{"op", "create"},
                 {"name", "s9"},
                 {"live", false},
                 {"disks", {{"0", {{"overlay", overlay.string()}, {"frozen", base_.string()}}}}}};
    store::write_snapshot_meta(vm_dir(), m);
  }

  // recover() refuses, names `victim`, and deletes nothing.
  void expect_refused(const fs::path& victim, const std::string& why) {
    const std::string before = testing::read_file(victim);
    const std::string meta_before = testing::read_file(vm_dir() / "snapshots.json");
    try {
      tree().recover();
      ADD_FAILURE() << "recovery accepted " << victim;
    } catch (const SnapshotError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find((vm_dir() / "snapshots.json").string() + " names " + victim.string()),
                std::string::npos)
          << what;
      EXPECT_NE(what.find(why), std::string::npos) << what;
      EXPECT_NE(what.find("delete its \"pending\" entry"), std::string::npos) << what;
    }
    ASSERT_TRUE(fs::exists(victim)) << victim << " was deleted";
    EXPECT_EQ(testing::read_file(victim), before);
    EXPECT_EQ(testing::read_file(vm_dir() / "snapshots.json"), meta_before)
        << "the record was changed";
  }
};

TEST_F(TamperedSnapshotMetaTest, APendingOverlayOutsideTheFolderIsNeverDeleted) {
  const fs::path victim = dir_.write("victim/passwd", kQcow2Header + "root:x:0:0");
  plant_pending_create(victim);
  expect_refused(victim, "lies outside the VM's folder " + vm_dir().string());
}

TEST_F(TamperedSnapshotMetaTest, APendingOverlayNamingTheProfilesImageIsNeverDeleted) {
  std::ofstream(base_) << kQcow2Header << "the guest's data";
  plant_pending_create(base_);
  expect_refused(base_, "is the image of disk 0 in the VM's profile");
}

TEST_F(TamperedSnapshotMetaTest, AProfileImageInsideTheFolderIsNeverDeleted) {
  // qvm run puts the disks a profile runs on into the VM's folder.
  const fs::path inside = dir_.write("state/vms/vm/run-disks/disk0.qcow2", kQcow2Header + "data");
  profile_.disks[0].path = inside;
  plant_pending_create(inside);
  expect_refused(inside, "is the image of disk 0 in the VM's profile");
}

TEST_F(TamperedSnapshotMetaTest, AHardLinkToTheBackingImageIsNeverDeleted) {
  const fs::path backing = dir_.write("images/base.qcow2", kQcow2Header + "base");
  profile_.disks[0].backing = backing;
  const fs::path link = vm_dir() / "disks" / "disk0.5.qcow2";
  fs::create_directories(link.parent_path());
  fs::create_hard_link(backing, link);
  plant_pending_create(link);
  expect_refused(link,
                 "is the backing image of disk 0 in the VM's profile (" + backing.string() + ")");
}

TEST_F(TamperedSnapshotMetaTest, AFileThatIsNotAnImageIsNeverDeleted) {
  const fs::path log = dir_.write("state/vms/vm/serial.log", "what the guest printed");
  plant_pending_create(log);
  expect_refused(log, "is not a qcow2 image");
}

TEST_F(TamperedSnapshotMetaTest, AFolderSymlinkedOutOfTheVmFolderIsNotInsideIt) {
  const fs::path victim = dir_.write("elsewhere/disk0.3.qcow2", kQcow2Header);
  fs::create_directories(vm_dir() / "disks");
  fs::create_directory_symlink(dir_ / "elsewhere", vm_dir() / "disks" / "link");
  plant_pending_create(vm_dir() / "disks" / "link" / "disk0.3.qcow2");
  expect_refused(vm_dir() / "disks" / "link" / "disk0.3.qcow2", "lies outside the VM's folder");
  EXPECT_TRUE(fs::exists(victim));
}

TEST_F(TamperedSnapshotMetaTest, DotDotOutOfTheFolderIsRefused) {
  const fs::path victim = dir_.write("victim.qcow2", kQcow2Header);
  const fs::path sneaky = vm_dir() / "disks" / ".." / ".." / ".." / ".." / "victim.qcow2";
  fs::create_directories(vm_dir() / "disks");
  ASSERT_TRUE(fs::equivalent(sneaky, victim));
  plant_pending_create(sneaky);
  expect_refused(sneaky, "has a \".\" or \"..\" in its path");
  EXPECT_TRUE(fs::exists(victim));
}

TEST_F(TamperedSnapshotMetaTest, AnOverlayRecordOutsideTheFolderIsNotCollectedByRevert) {
  tree().create("s1", "", "stopped");
  tree().create("s2", "", "stopped");
  // Garbage as far as revert can tell: no snapshot froze it, no disk runs on it.
  const fs::path victim = dir_.write("victim/notes.qcow2", kQcow2Header + "notes");
  auto m = meta();
  m.overlays[victim.string()] = store::OverlayImage{base_, 0};
  store::write_snapshot_meta(vm_dir(), m);
  EXPECT_THROW(tree().revert("s1"), SnapshotError);
  EXPECT_TRUE(fs::exists(victim));
  EXPECT_EQ(meta().current, "s2") << "the refused revert changed nothing";
}

TEST_F(TamperedSnapshotMetaTest, AFrozenImageOutsideTheFolderIsNotDeletedByRemove) {
  tree().create("s1", "", "stopped");
  tree().create("s2", "", "stopped");
  // s2 claims to have frozen an outside file that qvm supposedly made.
  const fs::path victim = dir_.write("victim/important.qcow2", kQcow2Header + "keep me");
  auto m = meta();
  for (auto& record : m.snapshots) {
    if (record.name == "s2") record.disks[0].image = victim;
  }
  m.overlays[victim.string()] = store::OverlayImage{base_, 0};
  store::write_snapshot_meta(vm_dir(), m);
  try {
    tree().remove("s2");
    ADD_FAILURE() << "remove accepted it";
  } catch (const SnapshotError& e) {
    EXPECT_NE(std::string(e.what()).find(victim.string() +
                                         " as an overlay qvm made for disk 0, but it lies outside"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::exists(victim));
}

TEST_F(TamperedSnapshotMetaTest, ADiskIndexTheProfileDoesNotHaveIsRefusedByName) {
  tree().create("s1", "", "stopped");
  auto m = meta();
  m.snapshots[0].disks[0].disk = 7;
  store::write_snapshot_meta(vm_dir(), m);
  try {
    tree().remove("s1");
    ADD_FAILURE() << "remove accepted it";
  } catch (const SnapshotError& e) {
    EXPECT_EQ(std::string(e.what()),
              (vm_dir() / "snapshots.json").string() +
                  ": snapshot \"s1\" names disk 7, but the VM's profile has 2 disks; "
                  "correct or restore snapshots.json");
  }
}

TEST_F(TamperedSnapshotMetaTest, AHalfCreatedOverlayIsStillUndone) {
  // QEMU or qemu-img cut short while creating the overlay: an empty file, qvm's own.
  const fs::path overlay = vm_dir() / "disks" / "disk0.1.qcow2";
  fs::create_directories(overlay.parent_path());
  std::ofstream{overlay};
  plant_pending_create(overlay);
  tree().recover();
  EXPECT_FALSE(fs::exists(overlay));
  EXPECT_TRUE(meta().pending.is_null());
}

// A snapshot tree must be a tree: snapshot ls walks it from the roots, revert and rm follow
// its parents. Anything else is refused by name with the file's path.
TEST(SnapshotMetaTest, ATreeThatIsNoTreeIsRefusedByName) {
  testing::TempDir dir;
  const std::string file = (dir / "snapshots.json").string();
  auto snap = [](const std::string& name, const char* parent) {
    nlohmann::json record = {{"name", name},
                             {"parent", parent ? nlohmann::json(parent) : nlohmann::json(nullptr)},
                             {"disks", nlohmann::json::array()}};
    return record;
  };
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"version", 1}, {"snapshots", {snap("a", nullptr), snap("a", "a")}}},
       "two snapshots are named \"a\""},
      {{{"version", 1}, {"snapshots", {snap("a", "b"), snap("b", "a")}}},
       "is its own ancestor (a parent cycle)"},
      {{{"version", 1}, {"snapshots", {snap("a", "a")}}},
       "snapshot \"a\" is its own ancestor (a parent cycle)"},
      {{{"version", 1}, {"snapshots", {snap("a", nullptr), snap("b", "gone")}}},
       "snapshot \"b\" has parent \"gone\", which is not a snapshot"},
      {{{"version", 1}, {"current", "gone"}, {"snapshots", {snap("a", nullptr)}}},
       "\"current\" names \"gone\", which is not a snapshot"},
      {{{"version", 1}, {"snapshots", {snap("../../x", nullptr)}}},
       "\"snapshots\"[0].name \"../../x\" is not a snapshot name"},
      {{{"version", 1},
        {"snapshots", {snap("a", nullptr)}},
        {"pending", {{"op", "create"}, {"name", "a"}}}},
       "\"pending\" creates snapshot \"a\", which already exists"},
      {{{"version", 1}, {"pending", {{"op", "revert"}, {"name", "nope"}}}},
       "\"pending\" reverts to \"nope\", which is not a snapshot"},
  };
  for (const auto& [json, expected] : cases) {
    std::ofstream(dir / "snapshots.json", std::ios::trunc) << json.dump();
    try {
      store::read_snapshot_meta(dir.path());
      ADD_FAILURE() << "accepted " << json.dump();
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.starts_with(file + ": ")) << what;
      EXPECT_NE(what.find(expected), std::string::npos) << what;
    }
  }
}

// Wrong types anywhere are qvm's own error naming the file and the entry, never the JSON
// library's words or std::stoul's.
TEST(SnapshotMetaTest, WrongTypesAreRefusedWithTheFilesPathAndTheEntry) {
  testing::TempDir dir;
  const std::string file = (dir / "snapshots.json").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([1, 2])", "the file is not a JSON object"},
      {R"({})", "\"version\" is missing"},
      {R"({"version": "1"})", "\"version\" is not an integer in range"},
      {R"({"version": 1, "current": 5})", "\"current\" is not a snapshot name or null"},
      {R"({"version": 1, "active": {"zero": "/x"}})", "\"active\"[\"zero\"] is not a disk index"},
      {R"({"version": 1, "active": {"0": 5}})", "\"active\"[\"0\"] is not a path"},
      {R"({"version": 1, "active": []})", "\"active\" is not an object"},
      {R"({"version": 1, "overlays": {"/o": {"backing": 1, "disk": 0}}})",
       "\"overlays\"[\"/o\"].backing is not a string"},
      {R"({"version": 1, "overlays": {"/o": {"backing": "/b", "disk": -1}}})",
       "\"overlays\"[\"/o\"].disk is not an integer"},
      {R"({"version": 1, "snapshots": {}})", "\"snapshots\" is not an array"},
      {R"({"version": 1, "snapshots": [7]})", "\"snapshots\"[0] is not an object"},
      {R"({"version": 1, "snapshots": [{"name": 7, "disks": []}]})",
       "\"snapshots\"[0].name is not a string"},
      {R"({"version": 1, "snapshots": [{"name": "a", "description": 7, "disks": []}]})",
       "\"snapshots\"[0].description is not a string"},
      {R"({"version": 1, "snapshots": [{"name": "a"}]})", "\"snapshots\"[0].disks is not an array"},
      {R"({"version": 1, "snapshots": [{"name": "a", "disks": [{"disk": 0, "image": false}]}]})",
       "\"snapshots\"[0].disks[0].image is not a string"},
      {R"({"version": 1, "snapshots": [{"name": "a", "parent": 3, "disks": []}]})",
       "\"snapshots\"[0].parent is not a snapshot name or null"},
      {"{\"version\": 1", "not JSON"},
  };
  for (const auto& [text, expected] : cases) {
    std::ofstream(dir / "snapshots.json", std::ios::trunc) << text;
    try {
      store::read_snapshot_meta(dir.path());
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.starts_with(file + ": ")) << what;
      EXPECT_NE(what.find(expected), std::string::npos) << what;
      EXPECT_NE(what.find("restore it"), std::string::npos) << what;
      for (const char* leak : {"json.exception", "type_error", "stoul", "out_of_range"}) {
        EXPECT_EQ(what.find(leak), std::string::npos) << what;
      }
    }
  }
}

}  // namespace
}  // namespace qvm::snapshot
