#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qvm {

/// The image a new one is an overlay of, and that image's format ("qcow2", "raw").
struct BackingImage {
  std::filesystem::path path;
  std::string format;
};

/// The argv of `qemu-img create` for IMAGE in FORMAT, as an overlay of BACKING if given, of
/// SIZE bytes if given (an overlay without a size takes its backing image's). Pure.
std::vector<std::string> qemu_img_create_argv(const std::filesystem::path& image,
                                              const std::string& format,
                                              const std::optional<BackingImage>& backing,
                                              std::optional<std::uint64_t> size);

}  // namespace qvm
