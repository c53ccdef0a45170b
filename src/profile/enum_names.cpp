#include "profile/enum_names.hpp"

namespace qvm {

std::string_view to_string(Machine v) {
  return profile::spelling_of(profile::kMachines, v);
}
std::string_view to_string(Accel v) {
  return profile::spelling_of(profile::kAccels, v);
}
std::string_view to_string(Firmware v) {
  return profile::spelling_of(profile::kFirmwares, v);
}
std::string_view to_string(DiskFormat v) {
  return profile::spelling_of(profile::kDiskFormats, v);
}
std::string_view to_string(DiskBus v) {
  return profile::spelling_of(profile::kDiskBuses, v);
}
std::string_view to_string(CacheMode v) {
  return profile::spelling_of(profile::kCacheModes, v);
}
std::string_view to_string(NetMode v) {
  return profile::spelling_of(profile::kNetModes, v);
}
std::string_view to_string(RestartPolicy v) {
  return profile::spelling_of(profile::kRestartPolicies, v);
}

}  // namespace qvm
