#include "agent/log_server.h"

#include <httplib.h>

#include <charconv>
#include <fstream>

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

Result<std::unique_ptr<LogServer>> LogServer::Start(const std::string& listen,
                                                    const std::string& data_dir) {
  std::string host;
  int port = 0;
  if (Status s = SplitHostPort(listen, host, port); !s.ok())
    return Status::Invalid("--listen " + s.message());
  std::unique_ptr<LogServer> ls(new LogServer());
  ls->server_ = std::make_unique<httplib::Server>();
  const std::string tasks = data_dir + "/tasks/";
  ls->server_->Get(R"(/v1/tasks/(\d+)/(\d+)/(\d+)/logs)", [tasks](const httplib::Request& req,
                                                                  httplib::Response& res) {
    const std::string stream = req.has_param("stream") ? req.get_param_value("stream") : "stdout";
    if (stream != "stdout" && stream != "stderr") {
      res.status = 400;
      res.set_content(
          R"({"error": {"code": 400, "field": "stream", "message": "stream: must be stdout or stderr"}})",
          "application/json");
      return;
    }
    // The path is built from digits only (the route's pattern), so it cannot escape DATA.
    const std::string path = tasks + std::string(req.matches[1]) + "-" +
                             std::string(req.matches[2]) + "-" + std::string(req.matches[3]) + "." +
                             stream + ".log";
    auto file = std::make_shared<std::ifstream>(path, std::ios::binary);
    if (!*file) {
      res.status = 404;
      res.set_content(R"({"error": {"code": 404, "field": "", "message": "no such task log"}})",
                      "application/json");
      return;
    }
    file->seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(file->tellg());
    file->seekg(0);
    // The log may grow while it is sent: the answer is the prefix that existed at request time.
    res.set_content_provider(size, "text/plain",
                             [file](size_t offset, size_t length, httplib::DataSink& sink) {
                               char buf[64 * 1024];
                               file->seekg(static_cast<std::streamoff>(offset));
                               const size_t want = std::min(length, sizeof(buf));
                               file->read(buf, static_cast<std::streamsize>(want));
                               const auto got = static_cast<size_t>(file->gcount());
                               if (got == 0) return false;
                               return sink.write(buf, got);
                             });
  });
  int bound = port;
  if (port == 0) {
    bound = ls->server_->bind_to_any_port(host);
    if (bound < 0) return Status::Precondition("--listen " + listen + ": cannot bind");
  } else if (!ls->server_->bind_to_port(host, port)) {
    return Status::Precondition("--listen " + listen + ": cannot bind (port in use?)");
  }
  ls->address_ =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);
  httplib::Server* srv = ls->server_.get();
  ls->thread_ = std::thread([srv] { srv->listen_after_bind(); });
  return ls;
}

LogServer::~LogServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gpuorch::agent
