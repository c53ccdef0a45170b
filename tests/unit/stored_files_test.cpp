// The files qvm stores in a VM's folder and reads back (profile.toml, created-disks.json)
// as an editor, a full disk or another program may have left them: refused by path with
// the fix, and never a reason to delete a file qvm did not provably make.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "store/owned_files.hpp"
#include "store/vm_store.hpp"
#include "supervisor/disks.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;

const std::string kQcow2Header("QFI\xfb\0\0\0\3", 8);

class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

class StoredFilesTest : public ::testing::Test {
 protected:
  fs::path state() const { return dir_ / "state"; }
  fs::path vm_dir(const std::string& name) const { return state() / "vms" / name; }
  fs::path profile_file(const std::string& name) const { return vm_dir(name) / "profile.toml"; }

  Profile profile(const std::string& toml, const std::string& name = "x") const {
    EverythingExists files;
    return parse_profile(toml, dir_ / (name + ".toml"), {{}, std::nullopt, &files});
  }

  // Defines VM `name` as `qvm up` would, without starting it.
  void define(const Profile& p) const { Inventory::open(state())->define(p); }

  std::string stored_fix(const std::string& name) const {
    return profile_file(name).string() + ": this is qvm's stored copy of the profile of VM \"" +
           name +
           "\", which it writes whole; qvm up PROFILE again to re-define the VM, or qvm rm " + name;
  }

  testing::TempDir dir_;
  store::VmStore store_{dir_ / "state", dir_ / "run"};
};

// ---- profile.toml ----

TEST_F(StoredFilesTest, AnEmptyStoredProfileIsRefusedNeverADefaultVm) {
  define(profile("name = \"x\"\nmemory = \"256MiB\"\n"));
  std::ofstream(profile_file("x"), std::ios::trunc);
  try {
    const Profile loaded = store_.load_profile("x");
    ADD_FAILURE() << "loaded a VM named " << loaded.name << " from an empty file";
  } catch (const ProfileError& e) {
    EXPECT_EQ(std::string(e.what()), profile_file("x").string() +
                                         ": it has no name (the file is empty or damaged)\n" +
                                         stored_fix("x"));
  }
}

TEST_F(StoredFilesTest, AStoredProfileCutShortAnywhereIsRefused) {
  define(
      profile("name = \"x\"\nmemory = \"256MiB\"\nagent = true\n"
              "[[disk]]\npath = \"/images/a.qcow2\"\nsize = \"1GiB\"\n[[disk]]\npath = "
              "\"/images/b.qcow2\"\nsize = \"2GiB\"\n"
              "[[net]]\nmode = \"user\"\nforward = "
              "[\"tcp:127.0.0.1:2222:22\"]\n[shutdown]\ntimeout = 5\n"));
  const std::string whole = testing::read_file(profile_file("x"));
  ASSERT_EQ(store_.load_profile("x").disks.size(), 2u);
  std::size_t cuts = 0;
  for (std::size_t end = 0; end < whole.size(); ++end) {
    std::ofstream(profile_file("x"), std::ios::trunc) << whole.substr(0, end);
    try {
      const Profile loaded = store_.load_profile("x");
      ADD_FAILURE() << "accepted the file cut after " << end << " bytes:\n" << whole.substr(0, end);
    } catch (const ProfileError& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.starts_with(profile_file("x").string())) << what;
      EXPECT_TRUE(what.ends_with(stored_fix("x"))) << what;
    }
    ++cuts;
  }
  EXPECT_GT(cuts, 100u);
  std::ofstream(profile_file("x"), std::ios::trunc) << whole;
  EXPECT_EQ(store_.load_profile("x").disks.size(), 2u);
}

TEST_F(StoredFilesTest, AStoredProfileOfAnotherVmIsRefused) {
  define(profile("name = \"x\"\n"));
  define(profile("name = \"y\"\n", "y"));
  fs::copy_file(profile_file("y"), profile_file("x"), fs::copy_options::overwrite_existing);
  try {
    store_.load_profile("x");
    ADD_FAILURE() << "loaded y's profile as x";
  } catch (const ProfileError& e) {
    EXPECT_EQ(std::string(e.what()),
              profile_file("x").string() +
                  ": its name is \"y\", but it lies in the folder of VM \"x\"\n" + stored_fix("x"));
  }
}

TEST_F(StoredFilesTest, AStoredProfileThatIsNotAProfileSaysHowToFixIt) {
  define(profile("name = \"x\"\n"));
  std::ofstream(profile_file("x"), std::ios::trunc)
      << "name = \"x\"\ncpus = \"many\"\n[qemu]\nsandbox = true\n";
  try {
    store_.load_profile("x");
    ADD_FAILURE() << "accepted cpus = \"many\"";
  } catch (const ProfileError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.starts_with(profile_file("x").string() + ":2:")) << what;
    EXPECT_TRUE(what.ends_with("\n" + stored_fix("x"))) << what;
  }
}

TEST_F(StoredFilesTest, RedefiningIsTheFixForABrokenStoredProfile) {
  const Profile p = profile("name = \"x\"\nmemory = \"256MiB\"\n");
  define(p);
  std::ofstream(profile_file("x"), std::ios::trunc);
  EXPECT_THROW(store_.load_profile("x"), ProfileError);
  define(p);  // qvm up PROFILE
  EXPECT_EQ(store_.load_profile("x").memory_mib, 256u);
}

// ---- created-disks.json ----

// A fake qemu-img create: writes a qcow2 header or an empty raw image at the last path.
host::ProgramOutput fake_qemu_img(const std::vector<std::string>& argv) {
  if (argv.at(1) != "create") return {1, "unexpected"};
  const std::string& format = argv.at(4);
  fs::path file = argv.back();
  if (std::isdigit(static_cast<unsigned char>(file.string()[0]))) file = argv[argv.size() - 2];
  std::ofstream(file) << (format == "qcow2" ? kQcow2Header : std::string());
  return {0, ""};
}

store::FileIdentity identity(const fs::path& path) {
  return store::identity_of(path).value();
}

TEST_F(StoredFilesTest, CreatedDisksAreRecordedWithDeviceAndInode) {
  const Profile p = profile(
      "name = \"x\"\n[[disk]]\npath = \"disks/a.qcow2\"\nsize = \"1GiB\"\n"
      "[[disk]]\npath = \"disks/b.raw\"\nformat = \"raw\"\nsize = \"1GiB\"\n");
  define(p);
  const auto created = supervisor::create_missing_disks(p, fake_qemu_img);
  ASSERT_EQ(created.size(), 2u);
  supervisor::record_created_disks(store_, "x", created);
  const auto json = nlohmann::json::parse(testing::read_file(vm_dir("x") / "created-disks.json"));
  const fs::path a = dir_ / "disks" / "a.qcow2";
  EXPECT_EQ(json, nlohmann::json::parse(
                      nlohmann::json::array({{{"path", a.string()},
                                              {"device", identity(a).device},
                                              {"inode", identity(a).inode},
                                              {"format", "qcow2"}},
                                             {{"path", (dir_ / "disks" / "b.raw").string()},
                                              {"device", identity(dir_ / "disks" / "b.raw").device},
                                              {"inode", identity(dir_ / "disks" / "b.raw").inode},
                                              {"format", "raw"}}})
                          .dump()));
  EXPECT_EQ(supervisor::read_created_disks(vm_dir("x")), created);
  // The same disk created again (the user deleted it) is recorded as the new file it is.
  fs::remove(a);
  const auto again = supervisor::create_missing_disks(p, fake_qemu_img);
  ASSERT_EQ(again.size(), 1u);
  supervisor::record_created_disks(store_, "x", again);
  const auto read = supervisor::read_created_disks(vm_dir("x"));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[1].identity, identity(a));
}

TEST_F(StoredFilesTest, ABrokenCreatedDisksRecordIsRefusedByPath) {
  define(profile("name = \"x\"\n"));
  const fs::path file = vm_dir("x") / "created-disks.json";
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"[\"/a\", ", "not JSON"},
           {"{\"path\": \"/a\"}", "not a JSON array"},
           {"[7]", "entry 0 is not a path or an object with a \"path\""},
           {"[{\"path\": \"/a\", \"device\": \"1\", \"inode\": 2}]",
            "entry 0 (/a) has no integer \"device\" and \"inode\""},
           {"[{\"path\": \"/a\", \"device\": 1, \"inode\": 2, \"format\": \"vmdk\"}]",
            "entry 0 (/a) has a \"format\" that is not \"qcow2\" or \"raw\""}}) {
    std::ofstream(file, std::ios::trunc) << text;
    try {
      supervisor::read_created_disks(vm_dir("x"));
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.starts_with(file.string() + ": " + expected)) << what;
      EXPECT_EQ(what.find("json.exception"), std::string::npos) << what;
    }
  }
}

// rm --disks, the files created-disks.json may name: what qvm made (deleted), and what an
// old or tampered record names (kept, each with its reason). The VM is undefined either way.
class RmDisksTest : public StoredFilesTest {
 protected:
  void SetUp() override {
    base_ = dir_.write("images/base.qcow2", kQcow2Header + "the base every overlay reads");
    made_ = dir_.write("images/made.qcow2", kQcow2Header);
    define(profile(
        "name = \"x\"\n[[disk]]\npath = \"images/made.qcow2\"\nbacking = \"images/base.qcow2\"\n"));
  }

  nlohmann::json entry(const fs::path& path, const char* format = "qcow2") const {
    const auto id = identity(path);
    return {
        {"path", path.string()}, {"device", id.device}, {"inode", id.inode}, {"format", format}};
  }

  void record(const nlohmann::json& list) const {
    std::ofstream(vm_dir("x") / "created-disks.json", std::ios::trunc) << list.dump(2);
  }

  std::vector<fs::path> rm(std::vector<KeptDisk>& kept) const {
    return Inventory::open(state())->remove("x", false, true, &kept);
  }

  fs::path base_, made_;
};

TEST_F(RmDisksTest, OnlyTheImageQvmCreatedIsDeleted) {
  const fs::path victim = dir_.write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  const fs::path replaced = dir_.write("images/replaced.qcow2", kQcow2Header);
  const fs::path not_image = dir_.write("images/notes.qcow2", "plain text");
  const fs::path link = dir_ / "images" / "link.qcow2";
  fs::create_symlink(base_, link);
  const fs::path raw = dir_.write("images/made.raw", std::string(4096, '\0'));
  nlohmann::json list = {entry(made_),     entry(raw, "raw"), victim.string(), entry(base_),
                         entry(not_image), entry(link),       entry(replaced)};
  // replaced.qcow2 was deleted and another file took its name after qvm created it.
  // (Written beside it first, so that the new file cannot get the old one's inode.)
  fs::rename(dir_.write("images/replaced.new", kQcow2Header + "someone else's"), replaced);
  record(list);

  std::vector<KeptDisk> kept;
  const auto deleted = rm(kept);
  EXPECT_EQ(deleted, (std::vector<fs::path>{made_, raw}));
  EXPECT_FALSE(fs::exists(made_));
  EXPECT_FALSE(fs::exists(raw));
  for (const fs::path& path : {victim, base_, not_image, replaced})
    EXPECT_TRUE(fs::exists(path)) << path;
  EXPECT_TRUE(fs::is_symlink(link));
  std::map<fs::path, std::string> why;
  for (const auto& disk : kept) why[disk.path] = disk.reason;
  EXPECT_EQ(why[victim],
            "it lies outside the VM's folder " + vm_dir("x").string() +
                " and created-disks.json has it from an older qvm, without its device and inode, "
                "so qvm cannot tell it is the file it created");
  EXPECT_EQ(why[base_], "it is the backing image of disk 0 of VM \"x\"");
  EXPECT_EQ(why[not_image], "it is not a qcow2 image");
  EXPECT_EQ(why[link], "it is a symbolic link, not an image qvm made");
  EXPECT_EQ(why[replaced],
            "it is not the file qvm created there (its device and inode have changed since)");
  EXPECT_EQ(kept.size(), 5u);
  EXPECT_FALSE(fs::exists(vm_dir("x"))) << "rm still undefines the VM";
}

TEST_F(RmDisksTest, AnOldRecordDeletesNothingOutsideTheVmFolder) {
  // What qvm wrote before it recorded identities: plain paths.
  const fs::path inside = dir_.write("state/vms/x/run-disks/disk0.qcow2", kQcow2Header);
  record(nlohmann::json::array({made_.string(), base_.string(), inside.string()}));
  std::vector<KeptDisk> kept;
  EXPECT_EQ(rm(kept), (std::vector<fs::path>{inside}));
  EXPECT_TRUE(fs::exists(made_));
  EXPECT_TRUE(fs::exists(base_));
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].path, made_);
  EXPECT_TRUE(kept[0].reason.starts_with("it lies outside the VM's folder")) << kept[0].reason;
  EXPECT_EQ(kept[1].path, base_);
  EXPECT_EQ(kept[1].reason, "it is the backing image of disk 0 of VM \"x\"");
}

TEST_F(RmDisksTest, AnImageAnotherVmRunsOnIsKept) {
  record(nlohmann::json::array({entry(made_)}));
  define(profile(
      "name = \"y\"\n[[disk]]\npath = \"images/y.qcow2\"\nbacking = \"images/made.qcow2\"\n", "y"));
  std::vector<KeptDisk> kept;
  EXPECT_TRUE(rm(kept).empty());
  EXPECT_TRUE(fs::exists(made_));
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].reason, "it is the backing image of disk 0 of VM \"y\"");
}

TEST_F(RmDisksTest, AnUnreadableRecordDeletesNothingButTheVmIsStillRemoved) {
  std::ofstream(vm_dir("x") / "created-disks.json") << "[{\"path\": ";
  std::vector<KeptDisk> kept;
  EXPECT_TRUE(rm(kept).empty());
  EXPECT_TRUE(fs::exists(made_));
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(kept[0].path.empty());
  EXPECT_TRUE(
      kept[0].reason.starts_with((vm_dir("x") / "created-disks.json").string() + ": not JSON"))
      << kept[0].reason;
  EXPECT_TRUE(kept[0].reason.ends_with("; no disk was deleted")) << kept[0].reason;
  EXPECT_FALSE(fs::exists(vm_dir("x")));
}

// ---- through the real binary ----

TEST_F(RmDisksTest, TheCliSaysWhatItDeletedAndWhatItKeptAndWhy) {
  const fs::path victim = dir_.write("etc/shadow", "root:*:1:0:99999:7:::\n");
  record(nlohmann::json::array({entry(made_), victim.string()}));
  const auto result = testing::qvm(state(), {"rm", "x", "--disks"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "x: deleted " + made_.string() + "\nx: removed\n");
  EXPECT_EQ(
      result.err,
      "qvm: warning: x: kept " + victim.string() + ": it lies outside the VM's folder " +
          vm_dir("x").string() +
          " and created-disks.json has it from an older qvm, without its device and inode, so "
          "qvm cannot tell it is the file it created\n");
  EXPECT_TRUE(fs::exists(victim));
  EXPECT_FALSE(fs::exists(vm_dir("x")));
}

TEST_F(StoredFilesTest, SnapshotLsOfATreeWithDuplicateNamesIsRefusedNotACrash) {
  define(profile("name = \"x\"\n"));
  std::ofstream(vm_dir("x") / "snapshots.json")
      << R"({"version": 1, "current": "a", "snapshots": [)"
      << R"({"name": "a", "parent": null, "disks": []}, {"name": "a", "parent": "a", "disks": []}]})";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"snapshot", "ls", "x"}, {"snapshot", "ls", "x", "--json"}}) {
    const auto result = testing::qvm(state(), args);
    EXPECT_EQ(result.exit_code, 1) << result.err;
    EXPECT_EQ(
        result.err,
        "qvm: error: " + (vm_dir("x") / "snapshots.json").string() +
            ": two snapshots are named \"a\"; qvm wrote it whole, so it was damaged or edited: "
            "restore it, or correct that entry\n");
  }
}

TEST_F(StoredFilesTest, CommandsOnAnEmptyStoredProfileNameItsPath) {
  define(profile("name = \"x\"\n[[disk]]\npath = \"images/a.qcow2\"\n"));
  std::ofstream(profile_file("x"), std::ios::trunc);
  const auto result = testing::qvm(state(), {"snapshot", "create", "x", "s1"});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_EQ(result.err, "qvm: error: " + profile_file("x").string() +
                            ": it has no name (the file is empty or damaged)\n" + stored_fix("x") +
                            "\n");
}

}  // namespace
}  // namespace qvm
