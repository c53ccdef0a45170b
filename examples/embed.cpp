// Embedding qvm: start a VM from a profile, wait until it is ready, pause and resume it
// while watching its events, then shut it down gracefully.
#include <qvm/profile.hpp>
#include <qvm/vm.hpp>

#include <chrono>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: embed STATE_DIR PROFILE\n";
    return 2;
  }
  using namespace std::chrono_literals;
  try {
    auto inventory = qvm::Inventory::open(argv[1]);
    qvm::Profile profile = qvm::load_profile(argv[2]);
    qvm::Vm vm = inventory->up(profile);  // returns once the profile's [ready] is met
    std::cout << vm.name() << " is " << qvm::to_string(vm.status().state) << "\n";

    auto seen = vm.journal().size();
    vm.pause();
    if (auto stop = vm.wait_for_event("STOP", seen, 5s)) std::cout << "event: STOP\n";
    std::cout << vm.name() << " is " << qvm::to_string(vm.status().state) << "\n";
    vm.resume();

    qvm::DownResult down = vm.down();  // the ACPI power button first
    std::cout << "stopped by " << down.step << " (" << down.status.reason << ")\n";
    return 0;
  } catch (const qvm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
