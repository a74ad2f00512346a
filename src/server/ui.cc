// The web dashboard (docs/operations.md, "Web dashboard"): static files compiled into the
// binary, served without a token. The page itself then calls the API with the token the user
// gives it, so the files hold nothing secret and the API's authorization is unchanged.
#include <string>
#include <utility>
#include <vector>

#include "server/server.h"
#include "server/ui_assets.h"

namespace gpuorch::server {

const EmbeddedFile* FindUiFile(std::string_view name) {
  if (name.empty()) name = "index.html";
  for (const EmbeddedFile& f : EmbeddedUiFiles()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

std::string_view UiContentType(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".json", "application/json"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext) return type;
  }
  return "application/octet-stream";
}

void Server::UiRoutes() {
  // Headers of every /ui/ answer: the policy, no MIME sniffing, no referrer (the API's URLs
  // hold ids), and revalidation, so that an upgraded server's page is the one shown.
  auto headers = [] {
    return std::vector<std::pair<std::string, std::string>>{
        {"Content-Security-Policy", std::string(kUiContentSecurityPolicy)},
        {"X-Content-Type-Options", "nosniff"},
        {"Referrer-Policy", "no-referrer"},
        {"Cache-Control", "no-cache"}};
  };
  Route("GET", "/ui", [headers](const HttpRequest&, const Captures&, HttpRespond respond) {
    HttpResponse r{301, "text/plain; charset=utf-8", "/ui/\n", headers()};
    r.headers.emplace_back("Location", "/ui/");
    respond(std::move(r));
  });
  Route("GET", "/ui/**", [headers](const HttpRequest&, const Captures& m, HttpRespond respond) {
    const EmbeddedFile* f = FindUiFile(m[0]);
    if (f == nullptr) {
      return respond(HttpResponse{404, "text/plain; charset=utf-8",
                                  "no such file: /ui/" + m[0] + "\n", headers()});
    }
    respond(
        HttpResponse{200, std::string(UiContentType(f->name)), std::string(f->bytes()), headers()});
  });
}

}  // namespace gpuorch::server
