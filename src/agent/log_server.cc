#include "agent/log_server.h"

#include <httplib.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

namespace gpuorch::agent {

using core::Result;
using core::Status;

Status SplitHostPort(const std::string& s, std::string& host, int& port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return Status::Invalid("'" + s + "': expected host:port");
  host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string p = s.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec != std::errc() || ptr != p.data() + p.size() || port < 0 || port > 65535) {
    return Status::Invalid("'" + s + "': port must be in 0..65535");
  }
  return Status::Ok();
}

Result<std::string> NewLogSecret() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Precondition(std::string("getrandom: ") + std::strerror(errno));
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

bool LogCredentialOk(const std::string& authorization, const std::string& secret) {
  static const std::string kBearer = "Bearer ";
  if (secret.empty() || authorization.size() != kBearer.size() + secret.size() ||
      authorization.compare(0, kBearer.size(), kBearer) != 0) {
    return false;
  }
  // Constant time in the secret's content: no early exit on the first wrong byte.
  unsigned char diff = 0;
  for (size_t i = 0; i < secret.size(); ++i) {
    diff |= static_cast<unsigned char>(authorization[kBearer.size() + i] ^ secret[i]);
  }
  return diff == 0;
}

namespace {

void Error(httplib::Response& res, int code, const std::string& field, const std::string& message) {
  res.status = code;
  res.set_content(
      nlohmann::json{{"error", {{"code", code}, {"field", field}, {"message", message}}}}.dump(),
      "application/json");
}

// A non-negative byte count parameter; nullopt (and a 400 set) when malformed.
std::optional<int64_t> ByteParam(const httplib::Request& req, const char* name,
                                 httplib::Response& res) {
  if (!req.has_param(name)) return int64_t{0};
  const std::string v = req.get_param_value(name);
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || n < 0) {
    Error(res, 400, name, std::string(name) + ": must be a non-negative byte count");
    return std::nullopt;
  }
  return n;
}

}  // namespace

Result<std::unique_ptr<LogServer>> LogServer::Start(const std::string& listen,
                                                    const std::string& data_dir,
                                                    std::string secret) {
  if (secret.empty()) return Status::Invalid("log endpoint: a secret is required");
  std::unique_ptr<LogServer> ls(new LogServer());
  ls->server_ = std::make_unique<httplib::Server>();
  const std::string tasks = data_dir + "/tasks/";
  ls->server_->Get(R"(/v1/tasks/(\d+)/(\d+)/(\d+)/logs)", [tasks, secret](
                                                              const httplib::Request& req,
                                                              httplib::Response& res) {
    if (!LogCredentialOk(req.get_header_value("Authorization"), secret)) {
      res.set_header("WWW-Authenticate", "Bearer");
      return Error(res, 401, "Authorization",
                   "Authorization: the log endpoint answers only the server (Bearer log secret)");
    }
    const std::string stream = req.has_param("stream") ? req.get_param_value("stream") : "stdout";
    if (stream != "stdout" && stream != "stderr") {
      return Error(res, 400, "stream", "stream: must be stdout or stderr");
    }
    const std::optional<int64_t> offset = ByteParam(req, "offset", res);
    if (!offset) return;
    const std::optional<int64_t> tail = ByteParam(req, "tail", res);
    if (!tail) return;
    const std::optional<int64_t> limit = ByteParam(req, "limit", res);
    if (!limit) return;
    if (req.has_param("offset") && req.has_param("tail")) {
      return Error(res, 400, "tail", "tail: not with offset");
    }
    // The path is built from digits only (the route's pattern), so it cannot escape DATA.
    const std::string path = tasks + std::string(req.matches[1]) + "-" +
                             std::string(req.matches[2]) + "-" + std::string(req.matches[3]) + "." +
                             stream + ".log";
    auto file = std::make_shared<std::ifstream>(path, std::ios::binary);
    if (!*file) return Error(res, 404, "", "no such task log");
    file->seekg(0, std::ios::end);
    // The log may grow while it is sent: the answer is a range of what existed at request
    // time.
    const auto size = static_cast<int64_t>(file->tellg());
    const int64_t start =
        req.has_param("tail") ? std::max<int64_t>(size - *tail, 0) : std::min(*offset, size);
    int64_t length = size - start;
    if (*limit > 0) length = std::min(length, *limit);
    res.set_header("X-Gpuorch-Log-Size", std::to_string(size));
    res.set_header("X-Gpuorch-Log-Offset", std::to_string(start));
    res.set_content_provider(
        static_cast<size_t>(length), "text/plain",
        [file, start](size_t at, size_t left, httplib::DataSink& sink) {
          char buf[64 * 1024];
          file->seekg(static_cast<std::streamoff>(start + static_cast<int64_t>(at)));
          const size_t want = std::min(left, sizeof(buf));
          file->read(buf, static_cast<std::streamsize>(want));
          const auto got = static_cast<size_t>(file->gcount());
          if (got == 0) return false;
          return sink.write(buf, got);
        });
  });
  Result<std::string> address = BindListen(*ls->server_, listen, "--listen");
  if (!address.ok()) return address.status();
  ls->address_ = *address;
  httplib::Server* srv = ls->server_.get();
  ls->thread_ = std::thread([srv] { srv->listen_after_bind(); });
  return ls;
}

Result<std::string> BindListen(httplib::Server& server, const std::string& listen,
                               const std::string& flag) {
  std::string host;
  int port = 0;
  if (Status s = SplitHostPort(listen, host, port); !s.ok())
    return Status::Invalid(flag + " " + s.message());
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
    if (bound < 0) return Status::Precondition(flag + " " + listen + ": cannot bind");
  } else if (!server.bind_to_port(host, port)) {
    return Status::Precondition(flag + " " + listen + ": cannot bind (port in use?)");
  }
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(bound);
}

LogServer::~LogServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gpuorch::agent
