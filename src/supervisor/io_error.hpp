#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace qvm::supervisor {

/// The guest disk a BLOCK_IO_ERROR event is about, as its device id `diskN` (see
/// command_line's disk_device_id): read from the event's node name ("disk1-format",
/// "disk1-storage", "disk1-s3" once a snapshot put an overlay on top) or, failing that, its
/// device name. nullopt for any other drive (firmware, cloud-init seed). Pure; never throws.
std::optional<std::string> io_error_disk(const nlohmann::json& data);

/// True when QEMU stops the VM for this error (action "stop": werror/rerror=stop, or
/// werror=enospc on a full disk), so that the STOP event which follows is this error's.
bool io_error_stops_vm(const nlohmann::json& data);

/// What `qvm status` says of the pause that follows: "I/O error on disk1", or the node's
/// own name for a drive that is not a profile disk, or just "I/O error". Pure.
std::string io_error_reason(const nlohmann::json& data);

}  // namespace qvm::supervisor
