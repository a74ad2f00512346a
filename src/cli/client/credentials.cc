#include "cli/client/credentials.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace gpuorch::cli {
namespace {

std::string Trim(std::string s) {
  const char* ws = " \t\r\n";
  const size_t first = s.find_first_not_of(ws);
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

Outcome<std::string> ReadTokenFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return UsageError(what + ": cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = Trim(ss.str());
  if (token.empty()) return UsageError(what + ": " + path + " is empty");
  return token;
}

}  // namespace

std::string UserTokenPath() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/gpuorch/token";
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return std::string(home) + "/.config/gpuorch/token";
  return "";
}

Outcome<std::string> LoadToken(const std::string& token_file, bool use_config_file) {
  if (!token_file.empty()) return ReadTokenFile(token_file, "--token-file");
  const char* env = std::getenv("GPUORCH_TOKEN");
  if (env != nullptr && *env != '\0') return Trim(env);
  if (!use_config_file) return std::string();
  const std::string path = UserTokenPath();
  if (path.empty()) return std::string();
  std::ifstream probe(path);
  if (!probe) return std::string();  // no file: no token
  return ReadTokenFile(path, "token file");
}

std::string TokenHint() {
  return "set GPUORCH_TOKEN, pass --token-file, or write a token to " +
         (UserTokenPath().empty() ? std::string("~/.config/gpuorch/token") : UserTokenPath()) +
         " (a server's first administrator token is in its DATA/admin.token)";
}

}  // namespace gpuorch::cli
