// libFuzzer entry point: bytes from a hostile or broken QEMU through QmpFramer and
// parse_qmp_message. The only acceptable failure is a qvm::Error (QmpDisconnected); anything
// else (another exception, a crash, a sanitizer report) is a bug. The input is framed three
// times, whole, in 7-byte chunks and byte by byte, and the three must agree: how reads split
// the stream must never change the messages.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/qmp.hpp"

namespace {

struct Framed {
  std::vector<std::string> lines;
  bool refused = false;  // a line over the cap
};

Framed frame(std::string_view bytes, std::size_t chunk) {
  Framed framed;
  qvm::QmpFramer framer;
  try {
    while (!bytes.empty()) {
      const std::string_view piece = bytes.substr(0, chunk);
      bytes.remove_prefix(piece.size());
      for (std::string& line : framer.feed(piece)) framed.lines.push_back(std::move(line));
    }
  } catch (const qvm::Error&) {
    framed.refused = true;
  }
  return framed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Framed whole = frame(bytes, bytes.size() + 1);
  const Framed chunked = frame(bytes, 7);
  const Framed single = frame(bytes, 1);
  if (whole.refused != chunked.refused || whole.refused != single.refused) std::abort();
  // Lines completed before a refusal may be dropped with the chunk that held them.
  if (!whole.refused && (whole.lines != chunked.lines || whole.lines != single.lines)) std::abort();

  for (const std::string& line : whole.lines) {
    try {
      const qvm::QmpMessage message = qvm::parse_qmp_message(line);
      // What a client reads from each kind of message must be there.
      switch (message.kind) {
        case qvm::QmpMessage::Kind::error:
          (void)message.value.at("class").get_ref<const std::string&>();
          (void)message.value.at("desc").get_ref<const std::string&>();
          break;
        case qvm::QmpMessage::Kind::event:
          if (message.event.name.empty() && !message.event.raw.at("event").is_string())
            std::abort();
          break;
        default:
          break;
      }
      (void)message.id.dump();
    } catch (const qvm::Error&) {
    }
  }
  return 0;
}
