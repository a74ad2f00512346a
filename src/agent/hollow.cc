#include "agent/hollow.h"

#include <httplib.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "agent/emulated_executor.h"
#include "agent/log_server.h"
#include "agent/mig.h"
#include "agent/node_session.h"
#include "agent/runner.h"
#include "log/logging.h"

namespace gpuorch::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using core::Result;
using core::Status;

void Log(const std::string& line) { log::Info("hollow", {{"msg", line}}); }

// One keep-alive HTTP/1.1 connection of one node.
struct Conn {
  explicit Conn(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool open = false;

  void Close() {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    open = false;
  }
};

struct Server {
  std::string host;           // the Host header
  std::string authorization;  // the Authorization header ("" for none)
  tcp::resolver::results_type endpoints;
};

// One request on `c`, connecting first when needed. A request on a reused connection that
// fails is retried once on a new one: the server may have closed it while idle.
awaitable<HttpAnswer> Exchange(Conn& c, const Server& server, http::verb verb,
                               const std::string& target, const std::string& body,
                               std::chrono::milliseconds timeout) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = c.open;
    beast::error_code ec;
    if (!c.open) {
      c.stream.expires_after(std::chrono::seconds(2));
      co_await c.stream.async_connect(server.endpoints, asio::redirect_error(use_awaitable, ec));
      if (ec) {
        c.Close();
        co_return HttpAnswer{-1, "", "connect: " + ec.message()};
      }
      c.stream.socket().set_option(tcp::no_delay(true), ec);
      c.buffer.clear();
      c.open = true;
    }
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, server.host);
    if (!server.authorization.empty()) req.set(http::field::authorization, server.authorization);
    req.keep_alive(true);
    if (verb == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    c.stream.expires_after(timeout);
    co_await http::async_write(c.stream, req, asio::redirect_error(use_awaitable, ec));
    http::response<http::string_body> res;
    if (!ec) {
      co_await http::async_read(c.stream, c.buffer, res, asio::redirect_error(use_awaitable, ec));
    }
    if (ec) {
      c.Close();
      if (reused && ec != beast::error::timeout && ec != asio::error::operation_aborted) continue;
      co_return HttpAnswer{-1, "", ec.message()};
    }
    if (!res.keep_alive()) c.Close();
    co_return HttpAnswer{static_cast<int>(res.result_int()), std::move(res.body()), ""};
  }
  co_return HttpAnswer{-1, "", "connection closed by the server"};
}

}  // namespace

struct HollowFleet::Impl {
  // One hollow node: the agent's session over an emulated executor, and its connections.
  struct Node {
    Node(asio::io_context& io, Registration reg, int64_t heartbeat_ms, uint32_t seed)
        : executor(MonotonicMs),
          session(std::move(reg), executor, heartbeat_ms, nullptr),
          control(io),
          watch(io),
          wake(io),
          watch_gate(io),
          rng(seed) {}
    EmulatedExecutor executor;
    std::unique_ptr<MigManager> mig;  // --emulate-mig
    NodeSession session;
    Conn control, watch;
    asio::steady_timer wake;        // the control loop's sleep; cancelled to wake it
    asio::steady_timer watch_gate;  // the watch's sleep until registered / after a failure
    DesiredList watched;            // the newest list the watch got
    std::minstd_rand rng;
    // What this node last added to the fleet's counters.
    bool counted_registered = false, counted_failing = false;
    int counted_running = 0;
    int64_t counted_started = 0, counted_exited = 0;
  };

  HollowOptions options;
  Server server;
  std::unique_ptr<httplib::Server> logs;
  std::thread logs_thread;
  std::string log_address;

  // Destroyed in reverse: nodes (and their sockets) before the io_contexts they use.
  std::vector<std::unique_ptr<asio::io_context>> loops;
  std::vector<std::unique_ptr<Node>> nodes;

  std::atomic<bool> stopping{false};
  std::atomic<int> registered{0}, failing{0};
  std::atomic<int64_t> running{0}, started{0}, exited{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string last_failure;  // guarded by mu: why a contact failed last, for the summary

  void Failed(const char* what, const HttpAnswer& a) {
    std::string why = std::string(what) + ": " +
                      (a.status < 0 ? a.error : "server answered " + std::to_string(a.status));
    std::lock_guard lock(mu);
    last_failure = std::move(why);
  }

  // Brings the fleet's counters up to date with `n`.
  void Publish(Node& n) {
    const bool reg = n.session.registered() && n.session.failures() == 0;
    const bool fail = n.session.failures() > 0;
    if (reg != n.counted_registered) registered += reg ? 1 : -1;
    if (fail != n.counted_failing) failing += fail ? 1 : -1;
    n.counted_registered = reg;
    n.counted_failing = fail;
    running += n.executor.running() - n.counted_running;
    n.counted_running = n.executor.running();
    started += n.executor.started_total() - n.counted_started;
    n.counted_started = n.executor.started_total();
    exited += n.executor.exited_total() - n.counted_exited;
    n.counted_exited = n.executor.exited_total();
  }

  awaitable<void> Sleep(asio::steady_timer& t, int64_t ms) {
    t.expires_after(std::chrono::milliseconds(ms));
    beast::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  // Register if needed, then heartbeat: the contact a real agent's loop makes.
  awaitable<bool> Contact(Node& n) {
    const std::chrono::milliseconds timeout(5000);
    if (!n.session.registered()) {
      const HttpAnswer a =
          co_await Exchange(n.control, server, http::verb::post, NodeSession::kRegisterPath,
                            n.session.RegisterBody(), timeout);
      if (stopping) co_return false;
      if (!n.session.OnRegisterAnswer(a)) {
        Failed("register", a);
        co_return false;
      }
      n.watch_gate.cancel();  // the watch may start
    }
    const std::string body = n.session.HeartbeatBody();
    const HttpAnswer a = co_await Exchange(n.control, server, http::verb::post,
                                           n.session.HeartbeatPath(), body, timeout);
    if (stopping) co_return false;
    const bool ok = n.session.OnHeartbeatAnswer(a);
    if (!n.session.KeepContactConnection()) n.control.Close();
    if (ok) co_return true;
    if (a.status != 404) Failed("heartbeat", a);
    co_return false;
  }

  awaitable<void> ControlLoop(Node& n, int64_t start_delay_ms) {
    co_await Sleep(n.wake, start_delay_ms);
    while (!stopping) {
      const bool news = n.executor.Poll();  // an exit, or a service task ready
      if (n.session.ContactDue(MonotonicMs(), news)) {
        const bool ok = co_await Contact(n);
        if (stopping) break;
        n.session.ContactDone(ok, MonotonicMs());
      }
      Publish(n);
      const int64_t now = MonotonicMs();
      int64_t poll_ms = n.session.interval_ms();
      if (auto next = n.executor.NextEventMs()) poll_ms = std::min(poll_ms, *next - now);
      int64_t wait = n.session.WaitMs(now, poll_ms);
      // Nodes that failed together (a server restart) must not retry together.
      if (n.session.failures() > 0) wait += static_cast<int64_t>(n.rng() % (wait / 2 + 1));
      co_await Sleep(n.wake, wait);
    }
  }

  awaitable<void> WatchLoop(Node& n) {
    int failures = 0;
    while (!stopping) {
      if (!n.session.registered()) {
        // Woken by the control loop once registered; the timeout only re-checks.
        co_await Sleep(n.watch_gate, 1000);
        continue;
      }
      const int64_t interval = n.session.interval_ms();
      const HttpAnswer a =
          co_await Exchange(n.watch, server, http::verb::get,
                            WatchPath(n.session.registration().name, n.watched, interval), "",
                            std::chrono::milliseconds(interval + 5000));
      if (stopping) break;
      Result<DesiredList> got = ParseWatchAnswer(a);
      if (got.ok()) {
        failures = 0;
        if (got->NewerThan(n.watched)) {
          n.watched = std::move(got).value();
          // Same thread as the control loop: apply here, then let the loop recompute its
          // sleep (a new task may exit before it would wake) and report.
          n.session.Apply(n.watched);
          n.wake.cancel();
        }
        continue;
      }
      co_await Sleep(n.watch_gate, WatchBackoffMs(failures++, interval, n.rng()));
    }
  }

  // Ends every coroutine of the nodes on `io` (called on that io_context's thread).
  void StopNodes(size_t loop) {
    for (size_t i = loop; i < nodes.size(); i += loops.size()) {
      Node& n = *nodes[i];
      n.control.Close();
      n.watch.Close();
      n.wake.cancel();
      n.watch_gate.cancel();
    }
  }
};

HollowFleet::HollowFleet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HollowFleet::~HollowFleet() {
  if (impl_->logs) impl_->logs->stop();
  if (impl_->logs_thread.joinable()) impl_->logs_thread.join();
}

Result<std::unique_ptr<HollowFleet>> HollowFleet::Create(HollowOptions options) {
  if (options.count < 1) return Status::Invalid("--emulate-nodes: must be at least 1");
  if (options.gpus.count < 1) {
    return Status::Invalid("--emulate-gpus: hollow nodes need emulated GPUs, e.g. 8xH100-80GB");
  }
  if (options.name_prefix.empty()) return Status::Invalid("--name-prefix: must not be empty");
  if (options.heartbeat_ms < 10) return Status::Invalid("--heartbeat-ms: must be at least 10");
  if (options.threads < 1 || options.threads > 64) {
    return Status::Invalid("--emulate-threads: must be in 1..64");
  }
  if (options.register_per_s < 1) return Status::Invalid("--register-rate: must be at least 1");
  if (options.cpu_milli == 0) options.cpu_milli = int64_t{16000} * options.gpus.count;
  if (options.memory_mib == 0) options.memory_mib = int64_t{131072} * options.gpus.count;

  auto impl = std::make_unique<Impl>();
  // "http://host:port": what httplib::Client accepts too, for the same --server flag.
  const std::string& url = options.server_url;
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0) {
    return Status::Invalid("--server '" + url +
                           "': hollow nodes speak plain HTTP only (no TLS); run them against "
                           "a server without tls");
  }
  const size_t colon = url.rfind(':');
  if (url.rfind(scheme, 0) != 0 || colon == std::string::npos || colon < scheme.size()) {
    return Status::Invalid("--server '" + url + "': expected http://host:port");
  }
  std::string host = url.substr(scheme.size(), colon - scheme.size());
  std::string port = url.substr(colon + 1);
  while (!port.empty() && port.back() == '/') port.pop_back();
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    beast::error_code ec;
    impl->server.endpoints = resolver.resolve(host, port, ec);
    if (ec) return Status::Invalid("--server '" + url + "': " + ec.message());
    impl->server.host = url.substr(scheme.size(), colon - scheme.size()) + ":" + port;
    impl->server.authorization = AuthorizationHeader(options.token);
  }

  // One shared log endpoint: emulated tasks write nothing, and saying so beats a 502. It
  // answers only the server, like a real agent's (one secret for the fleet).
  Result<std::string> secret = NewLogSecret();
  if (!secret.ok()) return secret.status();
  impl->logs = std::make_unique<httplib::Server>();
  impl->logs->new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl->logs->Get(R"(/v1/tasks/(\d+)/(\d+)/(\d+)/logs)",
                  [key = *secret](const httplib::Request& req, httplib::Response& res) {
                    if (!LogCredentialOk(req.get_header_value("Authorization"), key)) {
                      res.status = 401;
                      return;
                    }
                    res.set_content("(emulated task on a hollow node: no output)\n", "text/plain");
                  });
  const size_t lc = options.listen.rfind(':');
  if (lc == std::string::npos) return Status::Invalid("--listen: expected host:port");
  const std::string lhost = options.listen.substr(0, lc);
  int lport = 0;
  try {
    lport = std::stoi(options.listen.substr(lc + 1));
  } catch (const std::exception&) {
    return Status::Invalid("--listen '" + options.listen + "': expected host:port");
  }
  if (lport == 0) {
    lport = impl->logs->bind_to_any_port(lhost);
  } else if (!impl->logs->bind_to_port(lhost, lport)) {
    lport = -1;
  }
  if (lport < 0) return Status::Invalid("--listen '" + options.listen + "': cannot bind");
  impl->log_address = lhost + ":" + std::to_string(lport);
  impl->logs_thread = std::thread([l = impl->logs.get()] { l->listen_after_bind(); });

  for (int t = 0; t < options.threads; ++t) {
    impl->loops.push_back(std::make_unique<asio::io_context>(1));
  }
  for (int i = 0; i < options.count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%05d", i + 1);
    Registration r;
    r.name = options.name_prefix + "-" + name;
    r.address = impl->log_address;
    r.log_secret = *secret;
    r.zone = options.zone;
    r.rack = options.rack;
    r.cpu_milli = options.cpu_milli;
    r.memory_mib = options.memory_mib;
    EmulatedGpuBackend gpus(options.gpus, r.name, options.mig);
    r.backend = std::string(gpus.Name());
    Result<std::vector<GpuInfo>> found = gpus.Discover();
    if (!found.ok()) return found.status();
    r.gpus = std::move(found).value();
    std::unique_ptr<MigManager> mig;
    if (options.mig) {
      Result<std::unique_ptr<MigDriver>> driver = gpus.OpenMig(r.gpus);
      if (!driver.ok()) return driver.status();
      Result<std::unique_ptr<MigManager>> m =
          MigManager::Open(std::move(driver).value(), r.gpus, nullptr);
      if (!m.ok()) return m.status();
      mig = std::move(m).value();
    }
    asio::io_context& io = *impl->loops[static_cast<size_t>(i) % impl->loops.size()];
    impl->nodes.push_back(std::make_unique<Impl::Node>(io, std::move(r), options.heartbeat_ms,
                                                       static_cast<uint32_t>(i + 1)));
    impl->nodes.back()->mig = std::move(mig);
    impl->nodes.back()->session.SetMig(impl->nodes.back()->mig.get());
  }
  impl->options = std::move(options);
  return std::unique_ptr<HollowFleet>(new HollowFleet(std::move(impl)));
}

void HollowFleet::Run() {
  Impl& m = *impl_;
  const HollowOptions& o = m.options;
  Log(std::to_string(o.count) + " hollow nodes " + o.name_prefix + "-00001.. (" +
      std::to_string(o.gpus.count) + "x" + o.gpus.model + " emulated GPUs each) on " +
      std::to_string(o.threads) + " threads, server " + o.server_url + ", logs on " +
      m.log_address + ", registering " + std::to_string(o.register_per_s) + "/s");
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    Impl::Node& n = *m.nodes[i];
    asio::io_context& io = *m.loops[i % m.loops.size()];
    const int64_t delay = static_cast<int64_t>(i) * 1000 / o.register_per_s;
    asio::co_spawn(io, m.ControlLoop(n, delay), asio::detached);
    asio::co_spawn(io, m.WatchLoop(n), asio::detached);
  }
  std::vector<std::thread> threads;
  for (auto& io : m.loops) threads.emplace_back([&io] { io->run(); });

  auto line = [this, &m] {
    const HollowSummary s = Summary();
    std::string failure;
    if (s.failing > 0) {
      std::lock_guard lock(m.mu);
      failure = " (last failure: " + m.last_failure + ")";
    }
    Log(std::to_string(s.registered) + "/" + std::to_string(s.nodes) + " nodes registered, " +
        std::to_string(s.failing) + " failing" + failure + "; tasks: " +
        std::to_string(s.tasks_running) + " running, " + std::to_string(s.tasks_started) +
        " started, " + std::to_string(s.tasks_exited) + " exited");
  };
  {
    std::unique_lock lock(m.mu);
    while (!m.stopping) {
      m.cv.wait_for(lock, std::chrono::milliseconds(o.summary_ms),
                    [&m] { return m.stopping.load(); });
      if (m.stopping) break;
      lock.unlock();
      line();
      lock.lock();
    }
  }
  for (size_t l = 0; l < m.loops.size(); ++l) {
    asio::post(*m.loops[l], [&m, l] { m.StopNodes(l); });
  }
  for (std::thread& t : threads) t.join();
  line();
  Log("stopped; the server will find these nodes Down");
}

void HollowFleet::Shutdown() {
  std::lock_guard lock(impl_->mu);
  impl_->stopping = true;
  impl_->cv.notify_all();
}

HollowSummary HollowFleet::Summary() const {
  HollowSummary s;
  s.nodes = static_cast<int>(impl_->nodes.size());
  s.registered = impl_->registered;
  s.failing = impl_->failing;
  s.tasks_running = impl_->running;
  s.tasks_started = impl_->started;
  s.tasks_exited = impl_->exited;
  return s;
}

const std::string& HollowFleet::log_address() const { return impl_->log_address; }

}  // namespace gpuorch::agent
