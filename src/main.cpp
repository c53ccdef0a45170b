#include "cli/cli.hpp"

int main(int argc, char** argv) { return qvm::cli::run(argc, argv); }
