#pragma once

// For tests of the self-contained report pages: loads a page in headless Chromium
// (/usr/bin/chromium) and says what went wrong. Header-only; tests skip when the browser is
// absent.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace gpuorch::sim::report_test {

inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loads `page` with its profile and logs under `work_dir`. Returns "" when the page's scripts
// ran without an uncaught error and its <body> carries `marker` (e.g. data-rendered="1"),
// else what went wrong.
inline std::string RenderErrors(const std::filesystem::path& page,
                                const std::filesystem::path& work_dir, const std::string& marker) {
  std::filesystem::create_directories(work_dir);
  const std::filesystem::path dom = work_dir / "dom.html", log = work_dir / "stderr.txt";
  const std::string cmd =
      "timeout 90 /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic "
      "--no-first-run --disable-background-networking --disable-component-update "
      "--disable-sync --user-data-dir=" +
      (work_dir / "profile").string() + " --enable-logging=stderr --v=0 --dump-dom 'file://" +
      page.string() + "' >'" + dom.string() + "' 2>'" + log.string() + "'";
  const int rc = std::system(cmd.c_str());
  const std::string err = Slurp(log), out = Slurp(dom);
  if (rc != 0) return "chromium exited with " + std::to_string(rc) + ": " + err;
  if (const size_t at = err.find("Uncaught"); at != std::string::npos) {
    return "script error: " + err.substr(at, err.find('\n', at) - at);
  }
  if (out.find(marker) == std::string::npos) return "the page's script did not run";
  return "";
}

}  // namespace gpuorch::sim::report_test
