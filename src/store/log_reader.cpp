#include "qvm/log.hpp"

#include "store/log_rotation.hpp"

namespace qvm {

LogReader::LogReader(std::filesystem::path log)
    : follower_(std::make_unique<store::LogFollower>(std::move(log))) {}
LogReader::~LogReader() = default;
LogReader::LogReader(LogReader&&) noexcept = default;
LogReader& LogReader::operator=(LogReader&&) noexcept = default;

std::string LogReader::read_new(std::size_t max_bytes) { return follower_->read_new(max_bytes); }

}  // namespace qvm
