#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/client/outcome.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace gpuorch::cli {

// Where the server is, split out of a `--server` URL such as `http://10.0.0.5:7480` or
// `http://gateway/gpuorch` (a path prefix is kept for servers behind a reverse proxy).
struct ServerUrl {
  std::string scheme_host_port;  // e.g. "http://127.0.0.1:7480"
  std::string base_path;         // "" or e.g. "/gpuorch", never ending in '/'
};

// Accepts http:// and https:// URLs with an optional port and path; anything else is a usage
// error that names the URL.
Outcome<ServerUrl> ParseServerUrl(std::string_view url);

// Percent-encodes one path segment or query value (RFC 3986 unreserved characters pass).
std::string UrlEncode(std::string_view s);

// "?k=v&k2=v2" for the pairs whose value is non-empty; "" when there are none.
std::string QueryString(const std::vector<std::pair<std::string, std::string>>& params);

// A blocking client for the REST API of docs/api.md. Every call maps the outcome onto the
// CLI's exit codes: a transport failure is kExitUnreachable (naming the URL), an HTTP error
// is kExitRefused with the server's `field: message`, and a 2xx answer that is not the JSON
// the API promises is kExitRefused too (the server is not speaking our protocol).
// Not thread-safe; one instance per command invocation.
class ApiClient {
 public:
  // `token` is sent as "Authorization: Bearer <token>" on every request ("" sends none).
  // An https:// server's certificate must verify against `ca_file` (PEM) when given, else
  // against the system's CAs, and name the URL's host; `ca_file` is unused for http://.
  static Outcome<std::unique_ptr<ApiClient>> Connect(std::string_view server_url,
                                                     const std::string& token = "",
                                                     const std::string& ca_file = "");
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // `path` starts with "/v1/..." and may carry a query string.
  Outcome<nlohmann::json> GetJson(const std::string& path);
  Outcome<nlohmann::json> PostJson(const std::string& path, const nlohmann::json& body);
  // `headers`, when given, receives the answer's headers (names as the server sent them).
  Outcome<std::string> GetText(const std::string& path,
                               std::multimap<std::string, std::string>* headers = nullptr);

  const std::string& url() const { return url_; }

 private:
  ApiClient(std::string url, ServerUrl parsed, const std::string& token,
            const std::string& ca_file);
  // What went wrong with a request that got no answer, in words.
  std::string TransportProblem(int error) const;

  // Sends one request; on success returns the raw body of a 2xx answer.
  Outcome<std::string> Send(const std::string& method, const std::string& path,
                            const std::string* json_body,
                            std::multimap<std::string, std::string>* headers = nullptr);

  std::string url_;
  ServerUrl parsed_;
  std::string ca_file_;
  std::unique_ptr<httplib::Client> http_;
};

// A client that sends `token`, or when it is empty the token LoadToken(token_file) finds
// (credentials.h: --token-file, GPUORCH_TOKEN, ~/.config/gpuorch/token).
Outcome<std::unique_ptr<ApiClient>> ConnectWithToken(std::string_view server_url,
                                                     const std::string& token,
                                                     const std::string& token_file,
                                                     const std::string& ca_file = "");

// Turns a non-2xx answer into the user-facing message: the API's `{"error": {...}}` gives
// "field: message" (the field is not repeated when the message already starts with it);
// anything else gives "HTTP <status>: <body>".
std::string DescribeHttpError(int status, const std::string& body);

}  // namespace gpuorch::cli
