#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"
#include "server/config.h"
#include "server/controller.h"
#include "store/state_store.h"

namespace httplib {
class Server;
}

namespace gpuorch::server {

// `gpuorch server`: the store, the controller with its loop thread, and the HTTP API.
class Server {
 public:
  static core::Result<std::unique_ptr<Server>> Create(const ServerConfig& config);
  ~Server();

  // Binds the listen address; returns the port actually bound (for ":0").
  core::Result<int> Bind();
  // Serves until Stop() is called from another thread or a signal handler's thread.
  void Serve();
  void Stop();
  Controller& controller() { return *controller_; }

 private:
  explicit Server(const ServerConfig& config);
  void Routes();

  ServerConfig config_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

// Splits "host:port"; the port must be 0..65535.
core::Status ParseHostPort(const std::string& s, std::string& host, int& port);

}  // namespace gpuorch::server
