#pragma once

#include <stdexcept>
#include <string>

namespace qvm {

/// Base of every exception qvm throws. what() is a complete sentence meant for the user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A command-line or API misuse by the caller (exit code 2 in the CLI).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// The host cannot run what was asked (no usable KVM when kvm was demanded, QEMU or
/// firmware missing). what() names the cause and the fix.
class HostError : public Error {
 public:
  using Error::Error;
};

}  // namespace qvm
