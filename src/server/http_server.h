#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

// An event-driven HTTP/1.1 server (Boost.Beast on Boost.Asio) for the control plane's API.
//
// Connections live on a few I/O threads: an open connection costs a socket and a few
// kilobytes of buffers, not a thread, so ten thousand agents each holding a watch cost
// what their requests cost. Parsed requests are handed to a small worker
// pool, so a handler that waits (a store commit, a proxied log fetch) never stalls the event
// loop. A handler answers through a completion that it may keep and call later from any
// thread (a long poll): nothing waits for it meanwhile.
//
// Protocol: HTTP/1.1 with keep-alive (HTTP/1.0 closes unless it asks to keep alive), one
// request at a time per connection (no pipelining beyond what is buffered), TCP_NODELAY,
// `Expect: 100-continue` honoured. Malformed requests get 400 and the connection is
// closed; a body over `max_body_bytes` gets 413 (from its Content-Length, before it is
// read); a connection beyond `max_connections` gets 503 and is closed; a connection idle
// (or sending a request slower than) `idle_timeout_ms` is closed. Error bodies come from
// `error_body` so they match the API's error format.
//
// TLS: with a certificate and key in the options, every connection begins with a TLS
// handshake (TLS 1.2 or 1.3), done on the I/O thread within `idle_timeout_ms` like any other
// read: a client that connects and never completes it holds its socket no longer than that.
// A client that speaks plain HTTP to a TLS port gets a plain-text 400 saying so. With a
// client CA the server asks for a client certificate: one that does not verify fails the
// handshake, none at all is accepted (HttpRequest::client_cn is then empty), so that the
// handler decides which requests need one.
namespace gpuorch::server {

struct HttpRequest {
  std::string method;                                       // as sent: "GET", "POST", ...
  std::string target;                                       // as sent, with the query
  std::string path;                                         // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> params;  // query, decoded, in order
  std::string body;
  std::string authorization;  // the Authorization header ("" when absent)
  // The client's IP address as the connection shows it ("10.0.0.7", "::1"; an IPv4-mapped
  // IPv6 address in its IPv4 form).
  std::string peer;
  // TLS with a client CA: the subject CN of the certificate the client presented, verified
  // against that CA ("" without TLS, without a client CA, or when it presented none).
  std::string client_cn;
  // For a long poll: asks to have `on_close` run (on a worker) if the client closes or
  // resets the connection before the answer is written. Any thread; at most once.
  std::function<void(std::function<void()> on_close)> watch_peer;

  bool HasParam(const std::string& name) const;
  // The first value of `name`; empty when absent.
  std::string Param(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {};  // extra ones (WWW-Authenticate)
};

// Answers one request; call it exactly once (later calls are ignored), from any thread.
// Cheap: it queues the write on the connection's I/O thread.
using HttpRespond = std::function<void(HttpResponse)>;
// Runs on a worker thread; may answer at once or keep `respond` and answer later.
using HttpHandler = std::function<void(const HttpRequest&, HttpRespond)>;

struct HttpOptions {
  int io_threads = 2;
  int worker_threads = 8;
  int64_t max_body_bytes = 1 << 20;
  int64_t idle_timeout_ms = 120'000;
  int64_t max_connections = 30'000;
  // The body of an error the server answers itself (400, 413, 503): the API's JSON.
  std::function<HttpResponse(int status, const std::string& field, const std::string& message)>
      error_body;
  // Runs on an I/O thread once Stop() was called, before the server stops accepting (the
  // controller answers its held watches there, and those answers are still written).
  std::function<void()> on_stop;
  // TLS (PEM files): the server's certificate chain and its key; both or neither. Read by
  // Bind(), so a restart picks up renewed files.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS: the CA whose certificates clients may present ("" asks for none).
  std::string tls_client_ca_file;
};

class HttpServer {
 public:
  HttpServer(HttpOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS files (when the options name them), binds and listens; returns the bound
  // port (for port 0, the one the system chose). Errors name the file or address at fault.
  core::Result<int> Bind(const std::string& host, int port);
  // Accepts and serves on `io_threads` threads (the caller's among them) until Stop().
  void Run();
  // Stops accepting, runs `on_stop`, lets the answers already given be written (up to a
  // second), then stops the I/O threads and closes every connection. Any thread, and
  // async-signal-safe (a signal handler may call it); idempotent. Run() returns once the
  // I/O threads are done.
  void Stop();

  // Calls `fn` on a worker thread once `delay` has passed (a long poll's deadline). Armed
  // timers are dropped at Stop().
  void RunAfter(std::chrono::milliseconds delay, std::function<void()> fn);

  // Connections open now (served or being refused).
  int64_t connections() const;

  struct Impl;  // the event loop and its connections (http_server.cc)

 private:
  std::unique_ptr<Impl> impl_;
};

// Decodes %XX escapes (and '+' as a space when `plus_is_space`, as in a query); an invalid
// escape is kept as it is.
std::string PercentDecode(const std::string& s, bool plus_is_space);

}  // namespace gpuorch::server
