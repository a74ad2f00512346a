#include "agent/metrics_server.h"

#include <httplib.h>

#include "agent/log_server.h"

namespace gpuorch::agent {

using core::Result;

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen) {
  std::unique_ptr<MetricsServer> ms(new MetricsServer());
  ms->server_ = std::make_unique<httplib::Server>();
  MetricsServer* self = ms.get();
  ms->server_->Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    std::string body;
    {
      std::lock_guard lock(self->mu_);
      body = self->exposition_;
    }
    res.set_content(std::move(body), "text/plain; version=0.0.4; charset=utf-8");
  });
  Result<std::string> address = BindListen(*ms->server_, listen, "--metrics-listen");
  if (!address.ok()) return address.status();
  ms->address_ = *address;
  httplib::Server* srv = ms->server_.get();
  ms->thread_ = std::thread([srv] { srv->listen_after_bind(); });
  return ms;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void MetricsServer::Publish(std::string exposition) {
  std::lock_guard lock(mu_);
  exposition_ = std::move(exposition);
}

}  // namespace gpuorch::agent
