#include "command_line/qemu_img.hpp"

namespace qvm {

std::vector<std::string> qemu_img_create_argv(const std::filesystem::path& image,
                                              const std::string& format,
                                              const std::optional<BackingImage>& backing,
                                              std::optional<std::uint64_t> size) {
  // -q: qemu-img's "Formatting ..." line would only be noise in an error message.
  std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", format};
  // -F: naming the backing format keeps qemu-img (and later QEMU) from probing it, which a
  // raw image written by the guest could otherwise steer.
  if (backing) argv.insert(argv.end(), {"-b", backing->path.string(), "-F", backing->format});
  argv.push_back(image.string());
  if (size) argv.push_back(std::to_string(*size));
  return argv;
}

}  // namespace qvm
