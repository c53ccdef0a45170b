#pragma once

#include <array>
#include <optional>
#include <span>
#include <string_view>

#include "qvm/profile.hpp"

namespace qvm::profile {

/// One enum value and its profile spelling.
template <class E>
struct Spelling {
  E value;
  std::string_view name;
};

/// The spellings of one enum, in the order the documentation lists them, and what the
/// value is called in an error message ("a machine type").
template <class E, std::size_t N>
struct EnumSpec {
  std::string_view noun;
  std::array<Spelling<E>, N> spellings;
};

inline constexpr EnumSpec<Machine, 3> kMachines{
    "a machine type",
    {{{Machine::q35, "q35"}, {Machine::pc, "pc"}, {Machine::microvm, "microvm"}}}};
inline constexpr EnumSpec<Accel, 3> kAccels{
    "an accelerator", {{{Accel::automatic, "auto"}, {Accel::kvm, "kvm"}, {Accel::tcg, "tcg"}}}};
inline constexpr EnumSpec<Firmware, 2> kFirmwares{
    "a firmware", {{{Firmware::bios, "bios"}, {Firmware::uefi, "uefi"}}}};
inline constexpr EnumSpec<DiskFormat, 2> kDiskFormats{
    "a disk format", {{{DiskFormat::qcow2, "qcow2"}, {DiskFormat::raw, "raw"}}}};
inline constexpr EnumSpec<DiskBus, 4> kDiskBuses{"a disk bus",
                                                 {{{DiskBus::virtio, "virtio"},
                                                   {DiskBus::scsi, "scsi"},
                                                   {DiskBus::nvme, "nvme"},
                                                   {DiskBus::ide, "ide"}}}};
inline constexpr EnumSpec<CacheMode, 5> kCacheModes{"a cache mode",
                                                    {{{CacheMode::none, "none"},
                                                      {CacheMode::writeback, "writeback"},
                                                      {CacheMode::writethrough, "writethrough"},
                                                      {CacheMode::unsafe, "unsafe"},
                                                      {CacheMode::directsync, "directsync"}}}};
inline constexpr EnumSpec<NetMode, 4> kNetModes{"a network mode",
                                                {{{NetMode::user, "user"},
                                                  {NetMode::bridge, "bridge"},
                                                  {NetMode::tap, "tap"},
                                                  {NetMode::none, "none"}}}};
inline constexpr EnumSpec<RestartPolicy, 3> kRestartPolicies{
    "a restart policy",
    {{{RestartPolicy::no, "no"},
      {RestartPolicy::on_failure, "on-failure"},
      {RestartPolicy::always, "always"}}}};

/// NIC models are strings in Profile (QEMU knows more), but a profile may name only these.
inline constexpr EnumSpec<std::string_view, 5> kNicModels{"a NIC model",
                                                          {{{"virtio", "virtio"},
                                                            {"e1000", "e1000"},
                                                            {"e1000e", "e1000e"},
                                                            {"rtl8139", "rtl8139"},
                                                            {"vmxnet3", "vmxnet3"}}}};

/// The value spelled `name`, if any (exact, case-sensitive match).
template <class E, std::size_t N>
constexpr std::optional<E> from_string(const EnumSpec<E, N>& spec, std::string_view name) {
  for (const auto& s : spec.spellings) {
    if (s.name == name) return s.value;
  }
  return std::nullopt;
}

/// The spelling of `value`; "" if the spec does not list it.
template <class E, std::size_t N>
constexpr std::string_view spelling_of(const EnumSpec<E, N>& spec, E value) {
  for (const auto& s : spec.spellings) {
    if (s.value == value) return s.name;
  }
  return {};
}

}  // namespace qvm::profile
