#include "cli/client/api_client.h"

#include <httplib.h>
#include <openssl/x509.h>

#include <cctype>
#include <fstream>
#include <regex>

#include "cli/client/credentials.h"

namespace gpuorch::cli {
namespace {

// Generous for a control plane on the same network, short enough that a wrong --server
// fails while the user is still looking at the terminal.
constexpr time_t kConnectTimeoutS = 5;
// Logs can be large and come through the server from an agent.
constexpr time_t kReadTimeoutS = 60;

std::string Trim(std::string s, size_t max_len) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.size() > max_len) s = s.substr(0, max_len) + "...";
  return s;
}

}  // namespace

// httplib's own names ("Connection", "Read") are terse; say what happened.
std::string ApiClient::TransportProblem(int error) const {
  const auto e = static_cast<httplib::Error>(error);
  switch (e) {
    case httplib::Error::Connection:
      return "connection failed: is `gpuorch server` running there?";
    case httplib::Error::ConnectionTimeout:
      return "timed out connecting";
    case httplib::Error::Read:
      return "the connection broke before an answer arrived";
    case httplib::Error::Write:
      return "the connection broke while sending the request";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed: does the server serve https (gpuorch server "
             "--tls-cert), and does it accept this client?";
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the CA certificate " + ca_file_ + " (--ca or GPUORCH_CA)";
    case httplib::Error::SSLServerVerification: {
      const long v = http_->get_openssl_verify_result();
      if (v == X509_V_OK) {  // the chain verified; the host is not among its names
        return "the server's certificate does not name the host of " + url_ +
               " (give the server a certificate for it: gpuorch certs init --hosts)";
      }
      return std::string("cannot verify the server's certificate: ") +
             X509_verify_cert_error_string(v) +
             (ca_file_.empty() ? " (give --ca or GPUORCH_CA)"
                               : " (is " + ca_file_ + " the CA that signed it?)");
    }
    default:
      return httplib::to_string(e);
  }
}

Outcome<ServerUrl> ParseServerUrl(std::string_view url) {
  static const std::regex kUrl(
      R"(^(https?)://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/.*)?$)");
  std::smatch m;
  std::string s(url);
  if (!std::regex_match(s, m, kUrl)) {
    return UsageError("--server: '" + s +
                      "' is not a URL like http://HOST:PORT (only http and https)");
  }
  if (m[3].matched && std::stoi(m[3].str().substr(1)) > 65535) {
    return UsageError("--server: port out of range in '" + s + "'");
  }
  ServerUrl out;
  out.scheme_host_port = m[1].str() + "://" + m[2].str() + m[3].str();
  out.base_path = m[4].str();
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

std::string QueryString(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    out += out.empty() ? '?' : '&';
    out += UrlEncode(k) + "=" + UrlEncode(v);
  }
  return out;
}

std::string DescribeHttpError(int status, const std::string& body) {
  auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
    const auto& e = parsed["error"];
    std::string message = e.value("message", "");
    std::string field =
        e.contains("field") && e["field"].is_string() ? e["field"].get<std::string>() : "";
    // A server that prefixes an empty field would print ": why"; drop the stray prefix.
    if (field.empty() && message.rfind(": ", 0) == 0) message.erase(0, 2);
    if (message.empty()) message = "HTTP " + std::to_string(status);
    if (!field.empty() && message.rfind(field + ":", 0) != 0) message = field + ": " + message;
    return message;
  }
  std::string text = Trim(body, 200);
  return "HTTP " + std::to_string(status) + (text.empty() ? "" : ": " + text);
}

Outcome<std::unique_ptr<ApiClient>> ApiClient::Connect(std::string_view server_url,
                                                       const std::string& token,
                                                       const std::string& ca_file) {
  auto parsed = ParseServerUrl(server_url);
  if (!parsed.ok()) return parsed.failure();
  const bool https = parsed.value().scheme_host_port.rfind("https://", 0) == 0;
  if (https && !ca_file.empty() && !std::ifstream(ca_file)) {
    return UsageError("--ca: cannot read " + ca_file);
  }
  return std::unique_ptr<ApiClient>(
      new ApiClient(std::string(server_url), parsed.value(), token, https ? ca_file : ""));
}

Outcome<std::unique_ptr<ApiClient>> ConnectWithToken(std::string_view server_url,
                                                     const std::string& token,
                                                     const std::string& token_file,
                                                     const std::string& ca_file) {
  if (!token.empty()) return ApiClient::Connect(server_url, token, ca_file);
  auto loaded = LoadToken(token_file, /*use_config_file=*/true);
  if (!loaded.ok()) return loaded.failure();
  return ApiClient::Connect(server_url, loaded.value(), ca_file);
}

ApiClient::ApiClient(std::string url, ServerUrl parsed, const std::string& token,
                     const std::string& ca_file)
    : url_(std::move(url)),
      parsed_(std::move(parsed)),
      ca_file_(ca_file),
      http_(std::make_unique<httplib::Client>(parsed_.scheme_host_port)) {
  if (!ca_file_.empty()) http_->set_ca_cert_path(ca_file_);
  http_->set_connection_timeout(kConnectTimeoutS, 0);
  http_->set_read_timeout(kReadTimeoutS, 0);
  http_->set_write_timeout(kConnectTimeoutS, 0);
  if (!token.empty()) http_->set_bearer_token_auth(token);
}

ApiClient::~ApiClient() = default;

Outcome<std::string> ApiClient::Send(const std::string& method, const std::string& path,
                                     const std::string* json_body,
                                     std::multimap<std::string, std::string>* headers) {
  const std::string full = parsed_.base_path + path;
  httplib::Result res = method == "GET"
                            ? http_->Get(full)
                            : http_->Post(full, json_body ? *json_body : "{}", "application/json");
  if (!res) {
    return Failure{kExitUnreachable, "cannot reach the gpuorch server at " + url_ + ": " +
                                         TransportProblem(static_cast<int>(res.error()))};
  }
  if (res->status == 401) {
    return Failure{kExitRefused, DescribeHttpError(res->status, res->body) + "; " + TokenHint()};
  }
  if (res->status < 200 || res->status > 299) {
    return Failure{kExitRefused, DescribeHttpError(res->status, res->body)};
  }
  if (headers != nullptr) headers->insert(res->headers.begin(), res->headers.end());
  return std::move(res->body);
}

Outcome<nlohmann::json> ApiClient::GetJson(const std::string& path) {
  auto body = Send("GET", path, nullptr);
  if (!body.ok()) return body.failure();
  auto j = nlohmann::json::parse(body.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Failure{kExitRefused, "the server at " + url_ + " answered GET " + path +
                                     " with something that is not JSON"};
  }
  return j;
}

Outcome<nlohmann::json> ApiClient::PostJson(const std::string& path, const nlohmann::json& body) {
  const std::string text = body.dump();
  auto answer = Send("POST", path, &text);
  if (!answer.ok()) return answer.failure();
  // Some actions (drain, cancel) have no documented answer body; an empty one is fine.
  if (answer.value().empty()) return nlohmann::json::object();
  auto j = nlohmann::json::parse(answer.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return nlohmann::json::object();
  return j;
}

Outcome<std::string> ApiClient::GetText(const std::string& path,
                                        std::multimap<std::string, std::string>* headers) {
  return Send("GET", path, nullptr, headers);
}

}  // namespace gpuorch::cli
