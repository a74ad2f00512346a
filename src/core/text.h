#pragma once

#include <cstddef>
#include <string_view>

namespace gpuorch::core {

// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF). Otherwise false, with `bad_at` (if given) the offset of the first byte of
// the first bad sequence. Text read from YAML is not checked by yaml-cpp, and JSON output
// (nlohmann) throws on bad UTF-8, so inputs that end up in JSON are checked on the way in.
bool IsValidUtf8(std::string_view s, size_t* bad_at = nullptr);

}  // namespace gpuorch::core
