#pragma once

// toml++ as every file of the profile module includes it, with one configuration.
// toml++ is compiled in (TOML_HEADER_ONLY, see CMakeLists.txt). Its internal assertions stay
// off in every build type, as in Debian's NDEBUG-built library: toml++ 3.3.0's parser trips
// some of them on malformed input it then reports as a parse error (see
// tests/fuzz/toml_fuzz_config.hpp, the fuzz build's own choice).
#if !defined(TOML_ASSERT) && !defined(TOML_CONFIG_HEADER)
#define TOML_ASSERT(expr) static_cast<void>(0)
#endif
#include <toml++/toml.h>
