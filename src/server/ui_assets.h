#pragma once

#include <cstddef>
#include <span>
#include <string_view>

// The web dashboard's static files (web/ in the source tree), compiled into the binary by
// cmake/embed_assets.cmake: the server serves them from memory under /ui/ and reads no file
// at run time.
namespace gpuorch::server {

struct EmbeddedFile {
  const char* name;  // relative to web/: "index.html", "app.js"
  const unsigned char* data;
  size_t size;
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data), size}; }
};

// Every file of web/, in the build's (name) order. Generated (ui_assets.cc in the build tree).
std::span<const EmbeddedFile> EmbeddedUiFiles();

// The file served at /ui/<name> ("" is index.html); null when there is none.
const EmbeddedFile* FindUiFile(std::string_view name);

// The Content-Type a file is served with, by its extension (utf-8 for text);
// "application/octet-stream" for an extension not listed.
std::string_view UiContentType(std::string_view name);

// The Content-Security-Policy of every /ui/ answer: the page loads only its own files and
// talks only to its own server (no inline script or style, no other origin).
inline constexpr std::string_view kUiContentSecurityPolicy =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

}  // namespace gpuorch::server
