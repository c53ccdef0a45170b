#pragma once

// Shared by the fuzz targets of stream readers (the QMP framer, the guest agent's framing):
// the ways one byte stream can arrive from a socket, as the reads that deliver it. A reader
// must give the same result for every split of the same bytes.
//
// Input layout. An input whose first byte is 0x01 carries its own split:
//   0x01 N L1 .. LN STREAM
// and STREAM arrives in chunks of L1+1, L2+1, ... LN+1 bytes, cycling (1..256 bytes each).
// Any other input is STREAM as it is, so a capture of a real session is a seed as it is.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace qvm::fuzz {

struct SplitStream {
  std::string_view stream;
  std::string_view lengths;  // the L bytes; empty: the input asked for no split
};

inline SplitStream read_split_stream(std::string_view bytes) {
  if (bytes.size() < 2 || bytes.front() != '\x01') return {bytes, {}};
  const std::size_t count = static_cast<unsigned char>(bytes[1]);
  bytes.remove_prefix(2);
  const std::size_t taken = count < bytes.size() ? count : bytes.size();
  return {bytes.substr(taken), bytes.substr(0, taken)};
}

/// Chunk sizes that add up to `size`: cycling through `lengths` (each byte L: L+1 bytes).
inline std::vector<std::size_t> cycled_split(std::size_t size, std::string_view lengths) {
  std::vector<std::size_t> chunks;
  for (std::size_t i = 0, done = 0; !lengths.empty() && done < size; ++i) {
    const std::size_t want = static_cast<unsigned char>(lengths[i % lengths.size()]) + 1u;
    chunks.push_back(want < size - done ? want : size - done);
    done += chunks.back();
  }
  return chunks;
}

/// Chunk sizes that add up to `size`, drawn from `seed`: mostly 1..16 bytes, some up to 4 KiB,
/// so that every boundary (inside "\r\n", right after a delimiter, ...) is hit by some input.
inline std::vector<std::size_t> seeded_split(std::size_t size, std::uint64_t seed) {
  std::vector<std::size_t> chunks;
  std::uint64_t state = seed;
  for (std::size_t done = 0; done < size;) {
    // splitmix64
    state += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const std::size_t want = (z & 7u) == 0 ? 1 + (z >> 8) % 4096 : 1 + (z >> 8) % 16;
    chunks.push_back(want < size - done ? want : size - done);
    done += chunks.back();
  }
  return chunks;
}

/// FNV-1a, to seed seeded_split from the input itself (libFuzzer inputs must be reproducible).
inline std::uint64_t hash_bytes(std::string_view bytes) {
  std::uint64_t hash = 0xCBF29CE484222325ull;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  return hash;
}

/// `size` chunks of one byte each.
inline std::vector<std::size_t> byte_split(std::size_t size) {
  return std::vector<std::size_t>(size, 1);
}

/// Every split a reader is fed with for `input`: whole, one byte at a time, from the input's
/// hash, and the input's own (when it has one).
inline std::vector<std::vector<std::size_t>> splits_for(const SplitStream& input) {
  const std::size_t size = input.stream.size();
  std::vector<std::vector<std::size_t>> splits;
  splits.push_back(size == 0 ? std::vector<std::size_t>() : std::vector<std::size_t>{size});
  splits.push_back(byte_split(size));
  splits.push_back(seeded_split(size, hash_bytes(input.stream)));
  if (!input.lengths.empty()) splits.push_back(cycled_split(size, input.lengths));
  return splits;
}

}  // namespace qvm::fuzz
