#include "hf3fs/ring_key.h"

#include <unistd.h>

#include <string>

namespace tfs {
namespace {

std::string Binary(uint64_t v) {
  std::string bits;
  for (; v != 0; v >>= 1) bits.insert(bits.begin(), static_cast<char>('0' + (v & 1)));
  return bits;
}

// The ring's id as 32 lower-case hex digits, and with the hyphens of the 8-4-4-4-12 form.
std::string HexId(const char id[16], bool hyphens) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (int i = 0; i < 16; i++) {
    if (hyphens && (i == 4 || i == 6 || i == 8 || i == 10)) hex += '-';
    hex += digits[static_cast<uint8_t>(id[i]) >> 4];
    hex += digits[static_cast<uint8_t>(id[i]) & 15];
  }
  return hex;
}

}  // namespace

// The key is rebuilt, never looked for: listing the iovs directory would make 3FS's daemon drop
// everything this thread registered when the listing's descriptor closes (its crash cleanup).
// Both spellings of the id are tried; the one that does not exist is an ENOENT, nothing more.
void UnlinkLeftoverRingKey(const hf3fs_ior& ior) {
  if (ior.flags < 2) return;
  std::string attrs = std::string(".") + (ior.for_read ? "r" : "w") + std::to_string(ior.io_depth);
  if (ior.priority != 0) attrs += ior.priority < 0 ? ".ph" : ".pl";
  attrs += ".t" + std::to_string(ior.timeout) + ".f" + Binary(ior.flags);
  const std::string dir = std::string(ior.mount_point) + "/3fs-virt/iovs/";
  for (bool hyphens : {true, false}) unlink((dir + HexId(ior.iov.id, hyphens) + attrs).c_str());
}

}  // namespace tfs
