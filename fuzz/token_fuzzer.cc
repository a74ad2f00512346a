// API tokens (`gpo_<accessor>.<secret>`) as a token file and as an Authorization header
// (the first input byte picks which). A token that parses prints back as itself (surrounding
// whitespace aside), and its accessor is one `IsAccessor` accepts; a header that parses
// holds a token that parses on its own.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  using gpuorch::server::FormatToken;
  using gpuorch::server::ParseToken;
  if (data[0] % 2 == 0) {
    auto t = ParseToken(text);
    if (!t.ok()) {
      if (t.status().message().empty()) std::abort();
      return 0;
    }
    const std::string printed = FormatToken(*t);
    if (printed.size() != gpuorch::server::kTokenLength) std::abort();
    if (text.find(printed) == std::string::npos) std::abort();
    if (!gpuorch::server::IsAccessor(t->accessor)) std::abort();
    auto again = ParseToken(printed);
    if (!again.ok() || again->accessor != t->accessor || again->secret != t->secret) std::abort();
    // A secret never matches another secret's hash (one flipped digit).
    std::string other = t->secret;
    other[0] = other[0] == '0' ? '1' : '0';
    if (gpuorch::server::SecretMatches(other, gpuorch::server::HashSecret(t->secret))) std::abort();
    if (!gpuorch::server::SecretMatches(t->secret, gpuorch::server::HashSecret(t->secret))) {
      std::abort();
    }
    return 0;
  }
  auto b = gpuorch::server::ParseBearer(text);
  if (!b.ok()) return 0;
  auto t = ParseToken(FormatToken(*b));
  if (!t.ok() || t->accessor != b->accessor || t->secret != b->secret) std::abort();
  return 0;
}
