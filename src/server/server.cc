#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <limits>

namespace gpuorch::server {

using core::Result;
using core::Status;

namespace {

void Reply(httplib::Response& res, int code, const Json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void ReplyError(httplib::Response& res, const ApiError& e) { Reply(res, e.code, e.ToJson()); }

// Parses the body as JSON, or answers 400 and returns false.
bool Body(const httplib::Request& req, httplib::Response& res, Json& out) {
  out = Json::parse(req.body, nullptr, false);
  if (out.is_discarded()) {
    ReplyError(res, ApiError{400, "", "body: not valid JSON"});
    return false;
  }
  return true;
}

bool IdParam(const std::string& s, int64_t& id) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  id = std::stoll(s);
  return true;
}

}  // namespace

Status ParseHostPort(const std::string& s, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return Status::Invalid("listen: expected HOST:PORT, got " + s);
  host = s.substr(0, colon);
  std::string p = s.substr(colon + 1);
  if (host.empty() || p.empty() || p.size() > 5 ||
      p.find_first_not_of("0123456789") != std::string::npos || std::stoi(p) > 65535) {
    return Status::Invalid("listen: expected HOST:PORT with a port in 0..65535, got " + s);
  }
  port = std::stoi(p);
  return Status::Ok();
}

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() {
  Stop();
  if (loop_.joinable()) loop_.join();
}

Result<std::unique_ptr<Server>> Server::Create(const ServerConfig& config) {
  std::unique_ptr<Server> s(new Server(config));
  std::error_code ec;
  std::filesystem::create_directories(config.data, ec);
  if (ec) return Status::Invalid("data: cannot create " + config.data + ": " + ec.message());
  auto store = store::OpenSqliteStore(config.data + "/gpuorch.db");
  if (!store.ok()) return store.status();
  s->store_ = std::move(store).value();
  auto controller = Controller::Create(config, s->store_.get());
  if (!controller.ok()) return controller.status();
  s->controller_ = std::move(controller).value();
  s->http_ = std::make_unique<httplib::Server>();
  // httplib writes headers and body separately: without this, keep-alive clients wait for a
  // delayed ACK (about 40 ms) on every request.
  s->http_->set_tcp_nodelay(true);
  // httplib serves a connection on one pool thread for as long as it stays open, and every
  // agent keeps two (its heartbeats and its watch) open: the pool must exceed the
  // connections, or new ones wait. Keep-alive connections are never closed for having
  // served many requests (httplib's default closes one after 5).
  const size_t threads = static_cast<size_t>(config.http_threads);
  s->http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->http_->set_keep_alive_max_count(std::numeric_limits<size_t>::max());
  s->Routes();
  return s;
}

Result<int> Server::Bind() {
  std::string host;
  int port = 0;
  if (Status st = ParseHostPort(config_.listen, host, port); !st.ok()) return st;
  int bound =
      port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, port) ? port : -1);
  if (bound < 0) return Status::Invalid("listen: cannot bind " + config_.listen);
  return bound;
}

void Server::Serve() {
  loop_ = std::thread([this] {
    // A cycle as soon as something changed, at least every cycle_interval_ms (timers:
    // node timeouts, grace periods, fair-share decay). Under load the cycle and its commit
    // take a while and the changes that arrive meanwhile form the next batch.
    while (!stop_) {
      controller_->Step();
      controller_->WaitForWork(config_.cycle_interval_ms);
    }
  });
  http_->listen_after_bind();
  stop_ = true;
  if (loop_.joinable()) loop_.join();
  controller_->Flush();  // whatever the API has shown is on disk before we exit
}

void Server::Stop() {
  stop_ = true;
  if (controller_) controller_->Shutdown();  // held watches answer now
  if (http_) http_->stop();
}

void Server::Routes() {
  httplib::Server& h = *http_;
  Controller& c = *controller_;
  h.set_payload_max_length(static_cast<size_t>(config_.max_body_bytes));
  h.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string field = res.status == 413 ? "body" : "";
    std::string msg = res.status == 413   ? "body: larger than the server accepts"
                      : res.status == 404 ? "no such endpoint"
                                          : "request failed";
    Reply(res, res.status, ApiError{res.status, field, msg}.ToJson());
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    Reply(res, 500, ApiError{500, "", "internal error"}.ToJson());
  });
  h.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  h.Get("/metrics", [&c](const httplib::Request&, httplib::Response& res) {
    res.set_content(c.Metrics(), "text/plain; version=0.0.4");
  });
  h.Post("/v1/workloads", [&c](const httplib::Request& req, httplib::Response& res) {
    Json body, out;
    ApiError e;
    if (!Body(req, res, body)) return;
    if (!c.Submit(body, out, e)) return ReplyError(res, e);
    Reply(res, 201, out);
  });
  h.Get("/v1/workloads", [&c](const httplib::Request& req, httplib::Response& res) {
    for (const auto& [k, v] : req.params) {
      if (k != "queue" && k != "state" && k != "kind") {
        return ReplyError(res, ApiError{400, k, k + ": unknown filter"});
      }
    }
    Reply(res, 200,
          c.ListWorkloads(req.get_param_value("queue"), req.get_param_value("state"),
                          req.get_param_value("kind")));
  });
  auto with_id = [](const httplib::Request& req, httplib::Response& res, int64_t& id) {
    if (IdParam(req.matches[1], id)) return true;
    ReplyError(res, ApiError{400, "id", "id: must be a workload number"});
    return false;
  };
  h.Get(R"(/v1/workloads/([^/]+))",
        [&c, with_id](const httplib::Request& req, httplib::Response& res) {
          int64_t id;
          Json out;
          ApiError e;
          if (!with_id(req, res, id)) return;
          if (!c.GetWorkload(id, out, e)) return ReplyError(res, e);
          Reply(res, 200, out);
        });
  auto cancel = [&c, with_id](const httplib::Request& req, httplib::Response& res) {
    int64_t id;
    Json out;
    ApiError e;
    if (!with_id(req, res, id)) return;
    if (!c.Cancel(id, out, e)) return ReplyError(res, e);
    Reply(res, 200, out);
  };
  h.Post(R"(/v1/workloads/([^/]+)/cancel)", cancel);
  h.Delete(R"(/v1/workloads/([^/]+))", cancel);
  h.Get(R"(/v1/workloads/([^/]+)/logs)",
        [&c, with_id](const httplib::Request& req, httplib::Response& res) {
          int64_t id;
          if (!with_id(req, res, id)) return;
          std::string task_s = req.has_param("task") ? req.get_param_value("task") : "0";
          std::string stream = req.has_param("stream") ? req.get_param_value("stream") : "stdout";
          int64_t task = 0;
          if (!IdParam(task_s, task) || task > 100000) {
            return ReplyError(res, ApiError{400, "task", "task: must be a task number"});
          }
          if (stream != "stdout" && stream != "stderr") {
            return ReplyError(res, ApiError{400, "stream", "stream: must be stdout or stderr"});
          }
          std::string address, path;
          ApiError e;
          if (!c.LogTarget(id, static_cast<int32_t>(task), address, path, e))
            return ReplyError(res, e);
          httplib::Client agent("http://" + address);
          agent.set_connection_timeout(2, 0);
          agent.set_read_timeout(10, 0);
          auto r = agent.Get(path + "?stream=" + stream);
          if (!r) {
            return ReplyError(res, ApiError{502, "", "agent at " + address + " did not answer"});
          }
          res.status = r->status;
          res.set_content(r->body, r->get_header_value("Content-Type").empty()
                                       ? "text/plain"
                                       : r->get_header_value("Content-Type").c_str());
        });
  h.Get("/v1/queues",
        [&c](const httplib::Request&, httplib::Response& res) { Reply(res, 200, c.ListQueues()); });
  h.Get(R"(/v1/queues/([^/]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    Json out;
    ApiError e;
    if (!c.GetQueue(req.matches[1], out, e)) return ReplyError(res, e);
    Reply(res, 200, out);
  });
  h.Get("/v1/nodes", [&c](const httplib::Request& req, httplib::Response& res) {
    int64_t limit = 0;
    for (const auto& [k, v] : req.params) {
      if (k != "limit" && k != "after") {
        return ReplyError(res, ApiError{400, k, k + ": unknown parameter"});
      }
    }
    if (req.has_param("limit") &&
        (!IdParam(req.get_param_value("limit"), limit) || limit < 1 || limit > 10000)) {
      return ReplyError(res, ApiError{400, "limit", "limit: must be a number in 1..10000"});
    }
    if (req.has_param("after") && limit == 0) {
      return ReplyError(res, ApiError{400, "after", "after: only with limit"});
    }
    Reply(res, 200, c.ListNodes(limit, req.get_param_value("after")));
  });
  for (bool drain : {true, false}) {
    h.Post(drain ? R"(/v1/nodes/([^/]+)/drain)" : R"(/v1/nodes/([^/]+)/undrain)",
           [&c, drain](const httplib::Request& req, httplib::Response& res) {
             Json out;
             ApiError e;
             if (!c.SetDrain(req.matches[1], drain, out, e)) return ReplyError(res, e);
             Reply(res, 200, out);
           });
  }
  h.Post("/v1/agents/register", [&c](const httplib::Request& req, httplib::Response& res) {
    Json body, out;
    ApiError e;
    if (!Body(req, res, body)) return;
    if (!c.Register(body, out, e)) return ReplyError(res, e);
    Reply(res, 200, out);
  });
  h.Get(R"(/v1/agents/([^/]+)/desired)", [&c](const httplib::Request& req, httplib::Response& res) {
    int64_t values[3] = {0, 0, 0};
    const char* names[3] = {"epoch", "after", "wait_ms"};
    for (const auto& [k, v] : req.params) {
      if (k != names[0] && k != names[1] && k != names[2]) {
        return ReplyError(res, ApiError{400, k, k + ": unknown parameter"});
      }
    }
    for (int i = 0; i < 3; ++i) {
      if (req.has_param(names[i]) && !IdParam(req.get_param_value(names[i]), values[i])) {
        return ReplyError(
            res,
            ApiError{400, names[i], std::string(names[i]) + ": must be a non-negative integer"});
      }
    }
    Json out;
    ApiError e;
    if (!c.WatchDesired(req.matches[1], values[0], values[1], values[2], out, e)) {
      return ReplyError(res, e);
    }
    Reply(res, 200, out);
  });
  h.Post(R"(/v1/agents/([^/]+)/heartbeat)",
         [&c](const httplib::Request& req, httplib::Response& res) {
           Json body, out;
           ApiError e;
           if (!Body(req, res, body)) return;
           if (!c.Heartbeat(req.matches[1], body, out, e)) return ReplyError(res, e);
           Reply(res, 200, out);
         });
}

}  // namespace gpuorch::server
