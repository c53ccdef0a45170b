// libFuzzer entry point: arbitrary bytes as the state files qvm reads back from a VM's folder,
// which a crash, a full disk or a user's editor may have left in any shape.
//
//  - state.json: parsed as VmStore::read_status does, then VmStatus::from_json, which may only
//    throw qvm::Error ("state: ..."); what it accepts must survive the round trip qvm makes on
//    every state change: to_json, dump, from_json, to_json gives the same document.
//  - snapshots.json: written to a scratch VM folder and read with store::read_snapshot_meta,
//    which may only throw qvm::Error naming the file's path; what it accepts must be a tree
//    (unique names, every parent a snapshot, no cycle), must survive to_json, dump,
//    from_json the same way, and find() must find every snapshot by its name.
//  - created-disks.json: parsed with supervisor::parse_created_disks, which may only throw
//    qvm::Error naming the file's path; what it accepts must read back the same from the
//    text qvm writes for it.
//
// Any other exception, a crash or a sanitizer report is a finding.
//
// Input layout. Most inputs are the file's text as it is, so any state.json or snapshots.json
// is a seed. An input whose first byte is 0x01 is instead run-length coded, to reach files
// larger than libFuzzer's inputs (deep nesting, long strings): in the rest of it, each
//   0x01 N B
// stands for the byte B repeated (N + 1) * 1024 times; other bytes stand for themselves.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "finding.hpp"
#include "qvm/vm.hpp"
#include "store/snapshot_meta.hpp"
#include "supervisor/created_disks.hpp"

namespace {

using nlohmann::json;
using qvm::fuzz::finding;
using qvm::fuzz::guarded;

constexpr std::string_view kTarget = "state_fuzz";

std::string read_case(std::string_view bytes) {
  if (bytes.empty() || bytes.front() != '\x01') return std::string(bytes);
  std::string text;
  for (std::size_t i = 1; i < bytes.size(); ++i) {
    if (bytes[i] == '\x01' && i + 2 < bytes.size()) {
      text.append((static_cast<unsigned char>(bytes[i + 1]) + 1u) * 1024u, bytes[i + 2]);
      i += 2;
    } else {
      text += bytes[i];
    }
  }
  return text;
}

// A scratch VM folder for snapshots.json, removed when the fuzzer exits. The path is never
// destroyed: static destructors run before atexit handlers registered earlier.
const std::filesystem::path& scratch_vm_dir() {
  static const std::filesystem::path* const dir = [] {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "qvm-state-fuzz.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) finding(kTarget, "harness: mkdtemp failed");
    const auto* made = new std::filesystem::path(pattern);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_vm_dir(), ignored);
    });
    return made;
  }();
  return *dir;
}

void expect_error(const qvm::Error& error, std::string_view prefix, const char* where) {
  const std::string_view what = error.what();
  if (what.rfind(prefix, 0) != 0) {
    finding(kTarget, std::string(where) + " threw an error that does not say which file", what);
  }
}

// What `qvm status --json` prints and state.json holds, less the one field that depends on
// the clock.
json stable_json(const qvm::VmStatus& status) {
  json document = status.to_json();
  document.erase("uptime_seconds");
  return document;
}

void check_state_json(const std::string& text) {
  // VmStore::read_status reports a file that is not JSON as unreadable; from_json is what
  // must cope with any JSON.
  const json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return;
  qvm::VmStatus status;
  try {
    status = qvm::VmStatus::from_json(document);
  } catch (const qvm::Error& error) {
    expect_error(error, "state: ", "VmStatus::from_json");
    return;
  }
  if (status.name != document.at("name").get<std::string>() ||
      status.state != qvm::parse_vm_state(document.at("state").get<std::string>())) {
    finding(kTarget, "VmStatus::from_json did not keep the name or state", text);
  }
  // VmStore::write_status, then the next qvm command reading it back.
  const json written = stable_json(status);
  const std::string file = written.dump(2);
  qvm::VmStatus again;
  try {
    again = qvm::VmStatus::from_json(json::parse(file));
  } catch (const qvm::Error& error) {
    finding(kTarget, "state.json as qvm writes it does not read back", error.what());
  }
  if (stable_json(again) != written) {
    finding(kTarget, "state.json changes when read back", file);
  }
}

void check_snapshots_json(const std::string& text) {
  const std::filesystem::path& dir = scratch_vm_dir();
  {
    std::ofstream out(dir / "snapshots.json", std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out.flush()) finding(kTarget, "harness: cannot write snapshots.json");
  }
  qvm::store::SnapshotMeta meta;
  try {
    meta = qvm::store::read_snapshot_meta(dir);
  } catch (const qvm::Error& error) {
    expect_error(error, (dir / "snapshots.json").string() + ": ", "read_snapshot_meta");
    return;
  }
  for (const qvm::store::SnapshotRecord& record : meta.snapshots) {
    const qvm::store::SnapshotRecord* found = meta.find(record.name);
    if (found == nullptr || found != &record) {
      finding(kTarget, "SnapshotMeta::find missed a snapshot, or two have its name", record.name);
    }
    // Every chain of parents ends at a root within as many steps as there are snapshots.
    std::optional<std::string> up = record.parent;
    for (std::size_t steps = 0; up; ++steps) {
      const qvm::store::SnapshotRecord* parent = meta.find(*up);
      if (parent == nullptr || steps > meta.snapshots.size()) {
        finding(kTarget, "read_snapshot_meta accepted a parent that is missing or a cycle",
                record.name);
      }
      up = parent->parent;
    }
  }
  // write_snapshot_meta, then the next snapshot command reading it back (in memory: the real
  // writer fsyncs, far too slow for every input).
  const json written = meta.to_json();
  const std::string file = written.dump(2);
  qvm::store::SnapshotMeta again;
  try {
    again = qvm::store::SnapshotMeta::from_json(json::parse(file));
  } catch (const qvm::Error& error) {
    finding(kTarget, "snapshots.json as qvm writes it does not read back", error.what());
  }
  if (again.to_json() != written) finding(kTarget, "snapshots.json changes when read back", file);
}

void check_created_disks(const std::string& text) {
  const std::filesystem::path file = "/vms/fuzz/created-disks.json";
  std::vector<qvm::supervisor::CreatedDisk> disks;
  try {
    disks = qvm::supervisor::parse_created_disks(text, file);
  } catch (const qvm::Error& error) {
    expect_error(error, file.string() + ": ", "parse_created_disks");
    return;
  }
  // record_created_disks writes it back; rm --disks reads it again.
  const std::string written = qvm::supervisor::created_disks_text(disks);
  std::vector<qvm::supervisor::CreatedDisk> again;
  try {
    again = qvm::supervisor::parse_created_disks(written, file);
  } catch (const qvm::Error& error) {
    finding(kTarget, "created-disks.json as qvm writes it does not read back", error.what());
  }
  if (again != disks) finding(kTarget, "created-disks.json changes when read back", written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = read_case(std::string_view(reinterpret_cast<const char*>(data), size));
  guarded(kTarget, "reading state.json", [&] { check_state_json(text); });
  guarded(kTarget, "reading snapshots.json", [&] { check_snapshots_json(text); });
  guarded(kTarget, "reading created-disks.json", [&] { check_created_disks(text); });
  return 0;
}
