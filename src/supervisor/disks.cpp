#include "supervisor/disks.hpp"

#include <nlohmann/json.hpp>

#include "qvm/error.hpp"

namespace qvm::supervisor {
namespace fs = std::filesystem;

std::string detect_image_format(const fs::path& image, const host::ProgramRunner& run) {
  auto out = run({"qemu-img", "info", "--output=json", "-U", image.string()});
  auto info = nlohmann::json::parse(out.out, nullptr, false);
  if (out.exit_code != 0 || !info.is_object() || !info.contains("format") || !info["format"].is_string()) {
    throw Error("cannot inspect " + image.string() + ": " + out.out.substr(0, 300));
  }
  return info["format"].get<std::string>();
}

std::vector<fs::path> create_missing_disks(const Profile& profile, const host::ProgramRunner& run) {
  std::vector<fs::path> created;
  try {
    for (const Disk& disk : profile.disks) {
      std::error_code ec;
      if (fs::exists(disk.path, ec)) continue;
      if (!disk.size_bytes && !disk.backing) {
        throw Error("disk " + disk.path.string() + " does not exist and the profile gives no size to create it");
      }
      fs::create_directories(disk.path.parent_path(), ec);
      std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", std::string(to_string(disk.format))};
      if (disk.backing) {
        argv.insert(argv.end(), {"-b", fs::absolute(*disk.backing).string(), "-F",
                                 detect_image_format(*disk.backing, run)});
      }
      argv.push_back(disk.path.string());
      if (disk.size_bytes) argv.push_back(std::to_string(*disk.size_bytes));
      auto out = run(argv);
      if (out.exit_code != 0) {
        throw Error("cannot create disk " + disk.path.string() + ": " + out.out);
      }
      created.push_back(disk.path);
    }
  } catch (...) {
    for (const auto& path : created) {
      std::error_code ec;
      fs::remove(path, ec);
    }
    throw;
  }
  return created;
}

}  // namespace qvm::supervisor
