#include "server/http_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <thread>

namespace gpuorch::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using core::Result;
using core::Status;

namespace {

// Request line and headers; the API's are a few hundred bytes.
constexpr uint32_t kHeaderLimit = 16 * 1024;
// After an answer that closes the connection, what the client still sends is read and
// dropped for this long before the socket closes, so that the close does not reset the
// connection before the client has read the answer (a 413 sent before its body was read).
constexpr auto kLingerTime = std::chrono::seconds(2);
// At Stop(), how long answers already given (watches answered at shutdown) get to be
// written before the I/O threads stop.
constexpr auto kStopGrace = std::chrono::seconds(1);

std::vector<std::pair<std::string, std::string>> ParseQuery(const std::string& q) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i <= q.size()) {
    size_t amp = q.find('&', i);
    if (amp == std::string::npos) amp = q.size();
    std::string part = q.substr(i, amp - i);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string k = part.substr(0, eq);
      std::string v = eq == std::string::npos ? "" : part.substr(eq + 1);
      out.emplace_back(PercentDecode(k, true), PercentDecode(v, true));
    }
    i = amp + 1;
  }
  return out;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Raises the soft limit on open descriptors to the hard one: every connection is one.
void RaiseFileLimit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &r);
  }
}

}  // namespace

std::string PercentDecode(const std::string& s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = Hex(s[i + 1]), lo = Hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

bool HttpRequest::HasParam(const std::string& name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return true;
  }
  return false;
}

std::string HttpRequest::Param(const std::string& name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return "";
}

struct HttpServer::Impl {
  Impl(HttpOptions o, HttpHandler h)
      : options(std::move(o)),
        handler(std::move(h)),
        io(options.io_threads),
        workers(static_cast<size_t>(options.worker_threads)),
        acceptor(io),
        retry_accept(io),
        stop_timer(io),
        stop_event(io) {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd >= 0) {
      stop_fd = fd;
      stop_event.assign(fd);
    }
    if (!options.error_body) {
      options.error_body = [](int status, const std::string&, const std::string& message) {
        return HttpResponse{status, "text/plain", message + "\n"};
      };
    }
  }

  void Accept();
  // Stops the I/O threads once every request read has been answered (or at `deadline`).
  void WaitIdleThenStop(std::chrono::steady_clock::time_point deadline);
  // On an I/O thread, once Stop() was called: the hook, then no more accepts.
  void OnStop();

  // Bind(): the TLS context, when the options name a certificate.
  Status LoadTls();

  HttpOptions options;
  HttpHandler handler;
  std::optional<ssl::context> tls;  // set by Bind(), before Run()
  // Declared before the io_context: connections dropped when it is destroyed count down.
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> busy{0};  // requests read and not yet answered
  std::atomic<bool> stopped{false};
  // Declared before the workers: a handler dropped at shutdown releases its connection
  // while the io_context it belongs to still exists.
  asio::io_context io;
  asio::thread_pool workers;
  tcp::acceptor acceptor;
  asio::steady_timer retry_accept;
  asio::steady_timer stop_timer;
  // Stop() only writes to this eventfd (async-signal-safe: the server stops from a signal
  // handler); the I/O thread that reads it does the stopping.
  asio::posix::stream_descriptor stop_event;
  int stop_fd = -1;
  uint64_t stop_word = 0;
};

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The subject CN of the peer's certificate when it verified; "" otherwise.
std::string VerifiedPeerCommonName(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string cn;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    X509_NAME* name = X509_get_subject_name(cert);
    const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char* utf8 = nullptr;
    if (i >= 0) {
      const int n =
          ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
      if (n > 0) cn.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  X509_free(cert);
  return cn;
}

// One connection: reads a request, hands it to a worker, writes the answer the handler
// gives, and reads the next (keep-alive). All its I/O runs on its strand. `Stream` is
// beast::tcp_stream, or TlsStream over one (the handshake comes first).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(MakeStream(std::move(socket), server)), server_(server) {
    beast::error_code ec;
    asio::ip::address peer = Tcp().socket().remote_endpoint(ec).address();
    if (!ec) {
      if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
        peer = asio::ip::make_address_v4(asio::ip::v4_mapped, peer.to_v6());
      }
      peer_ = peer.to_string();
    }
  }
  ~Session() {
    --server_->connections;
    if (busy_) --server_->busy;
  }

  void Start() {
    if constexpr (kTls) {
      Handshake();
    } else {
      ReadHeader();
    }
  }

  // Over the connection limit: answer 503 to the first request and close.
  void Refuse() {
    refuse_ = true;
    Start();
  }

 private:
  static Stream MakeStream(tcp::socket socket, HttpServer::Impl* server) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *server->tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  std::chrono::milliseconds Idle() const {
    return std::chrono::milliseconds(server_->options.idle_timeout_ms);
  }

  // TLS first, under the idle timeout (a timeout closes the socket and fails the handshake).
  void Handshake() {
    Tcp().expires_after(Idle());
    stream_.async_handshake(
        ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
          if (!ec) {
            self->handshaken_ = true;
            if constexpr (kTls)
              self->client_cn_ = VerifiedPeerCommonName(self->stream_.native_handle());
            return self->ReadHeader();
          }
          // Plain HTTP to a TLS port: say so in plain HTTP, which the client can read.
          if (ec.category() == asio::error::get_ssl_category() &&
              ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_HTTP_REQUEST) {
            return self->TellPlainClient();
          }
          self->Tcp().close();  // not TLS, a certificate that does not verify, or too slow
        });
  }

  void TellPlainClient() {
    static const std::string kAnswer = [] {
      const std::string body = "this server speaks HTTPS: use an https:// URL to reach it\n";
      return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
             "Content-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
    }();
    Tcp().expires_after(kLingerTime);
    asio::async_write(Tcp().socket(), asio::buffer(kAnswer),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->Tcp().close();
                        self->HalfCloseAndDrain();
                      });
  }

  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(static_cast<uint64_t>(server_->options.max_body_bytes));
    Tcp().expires_after(Idle());
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  // True when `ec` ended the read; answers or closes as the error deserves.
  bool ReadFailed(beast::error_code ec) {
    if (!ec) return false;
    if (ec == http::error::body_limit) {
      Fail(413, "body",
           "body: larger than the server accepts (max_body_bytes " +
               std::to_string(server_->options.max_body_bytes) + ")");
    } else if (ec == http::error::header_limit) {
      Fail(400, "", "request: headers larger than " + std::to_string(kHeaderLimit) + " bytes");
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      Fail(400, "", "request: malformed HTTP (" + ec.message() + ")");
    } else {
      Close();  // the peer closed, reset, or stayed silent past the idle timeout
    }
    return true;
  }

  void OnHeader(beast::error_code ec) {
    if (ReadFailed(ec)) return;
    if (refuse_) {
      Fail(503, "",
           "server: at its connection limit (max_connections " +
               std::to_string(server_->options.max_connections) + "); retry later");
      return;
    }
    const auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue),
                        [self = shared_from_this()](beast::error_code e, size_t) {
                          if (e) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return OnRequest();
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (self->ReadFailed(ec)) return;
                       self->OnRequest();
                     });
  }

  void OnRequest() {
    // The handler may hold the request as long as it likes (a long poll); the connection
    // is not idle meanwhile.
    Tcp().expires_never();
    busy_ = true;
    ++server_->busy;
    http::request<http::string_body> req = parser_->release();
    parser_.reset();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    const size_t q = r.target.find('?');
    r.path = PercentDecode(r.target.substr(0, q), false);
    if (q != std::string::npos) r.params = ParseQuery(r.target.substr(q + 1));
    r.body = std::move(req.body());
    r.authorization = std::string(req[http::field::authorization]);
    r.peer = peer_;
    r.client_cn = client_cn_;
    r.watch_peer = [self = shared_from_this()](std::function<void()> on_close) {
      asio::post(self->stream_.get_executor(),
                 [self, on_close = std::move(on_close)]() mutable { self->Monitor(on_close); });
    };

    auto answered = std::make_shared<std::atomic<bool>>(false);
    HttpRespond respond = [self = shared_from_this(), answered](HttpResponse res) {
      if (answered->exchange(true)) return;
      asio::post(self->stream_.get_executor(),
                 [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
    };
    asio::post(server_->workers, [server = server_, r = std::move(r), respond] {
      try {
        server->handler(r, respond);
      } catch (const std::exception&) {
        respond(server->options.error_body(500, "", "internal error"));
      }
    });
  }

  // While the handler holds the answer, reads the socket only to see the client go: end of
  // file or a reset runs `on_close`. Bytes the client sends early are kept for the next
  // request (and end the watching).
  void Monitor(std::function<void()> on_close) {
    if (!busy_ || writing_ || monitoring_) return;  // answered meanwhile
    on_close_ = std::move(on_close);
    monitoring_ = true;
    auto on_read = [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->OnMonitor(ec, n);
    };
    if constexpr (kTls) {
      stream_.async_read_some(buffer_.prepare(1024), std::move(on_read));
    } else {
      stream_.socket().async_read_some(buffer_.prepare(1024), std::move(on_read));
    }
  }

  void OnMonitor(beast::error_code ec, size_t n) {
    monitoring_ = false;
    if (!ec) buffer_.commit(n);
    if (closing_) {
      closing_ = false;
      return Close();
    }
    if (resume_) {
      resume_ = false;
      return ReadHeader();
    }
    if (!ec || ec == asio::error::operation_aborted) return;
    // Gone while its answer is pending: an answer still given fails to write and closes.
    if (busy_ && on_close_) asio::post(server_->workers, std::move(on_close_));
    on_close_ = nullptr;
  }

  void Write(HttpResponse res) {
    writing_ = true;
    on_close_ = nullptr;
    res_ = {};
    res_.version(version_);
    res_.result(static_cast<unsigned>(res.status));
    res_.set(http::field::content_type, res.content_type);
    for (const auto& [name, value] : res.headers) res_.set(name, value);
    res_.keep_alive(keep_alive_);
    res_.body() = std::move(res.body);
    res_.prepare_payload();
    if (head_) res_.body().clear();  // Content-Length still says what GET would send
    Tcp().expires_after(Idle());
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (self->busy_) {
        self->busy_ = false;
        --self->server_->busy;
      }
      if (ec || !self->keep_alive_ || self->server_->stopped) return self->Close();
      if (self->monitoring_) {  // the watching read must end before the next request's
        self->resume_ = true;
        beast::error_code ignored;
        self->Tcp().socket().cancel(ignored);
        return;
      }
      self->ReadHeader();
    });
  }

  // Answers an error the server found itself, then closes.
  void Fail(int status, const std::string& field, const std::string& message) {
    keep_alive_ = false;
    Write(server_->options.error_body(status, field, message));
  }

  // Half-closes, drops what the client still sends for a moment, then closes. TLS sends
  // its close_notify first and waits (as long as the drain) for the client's.
  void Close() {
    if (monitoring_) {  // one read at a time: the drain starts once the watching read ends
      closing_ = true;
      beast::error_code ignored;
      Tcp().socket().cancel(ignored);
      return;
    }
    if constexpr (kTls) {
      if (handshaken_ && Tcp().socket().is_open()) {
        Tcp().expires_after(kLingerTime);
        stream_.async_shutdown([self = shared_from_this()](beast::error_code ec) {
          if (ec == beast::error::timeout) return self->Tcp().close();
          self->HalfCloseAndDrain();
        });
        return;
      }
    }
    HalfCloseAndDrain();
  }

  // The drain reads below TLS: whatever follows the close is dropped unread.
  void HalfCloseAndDrain() {
    beast::error_code ec;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Tcp().close();
    Tcp().expires_after(kLingerTime);
    Drain();
  }

  void Drain() {
    Tcp().async_read_some(asio::buffer(drain_),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            if (ec) return self->Tcp().close();
                            self->Drain();
                          });
  }

  Stream stream_;
  HttpServer::Impl* server_;
  std::string peer_;       // the client's IP address (audit log, agents' log hosts)
  std::string client_cn_;  // TLS: the verified client certificate's CN
  bool handshaken_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;  // alive until its write completes
  bool keep_alive_ = false;
  bool head_ = false;
  bool refuse_ = false;
  bool busy_ = false;
  bool writing_ = false;
  bool monitoring_ = false;  // Monitor's read is pending
  bool resume_ = false;      // read the next request once it ends
  bool closing_ = false;     // close once it ends
  std::function<void()> on_close_;
  unsigned version_ = 11;
  char drain_[512];
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (stopped) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // Out of descriptors (or another transient failure): the pending connections wait in
      // the backlog until some close.
      retry_accept.expires_after(std::chrono::milliseconds(100));
      retry_accept.async_wait([this](beast::error_code) { Accept(); });
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const int64_t open = ++connections;
    const bool refuse = open > options.max_connections;
    if (tls) {
      auto session = std::make_shared<Session<TlsStream>>(std::move(socket), this);
      refuse ? session->Refuse() : session->Start();
    } else {
      auto session = std::make_shared<Session<beast::tcp_stream>>(std::move(socket), this);
      refuse ? session->Refuse() : session->Start();
    }
    Accept();
  });
}

HttpServer::HttpServer(HttpOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  Stop();
  impl_->workers.join();
}

Status HttpServer::Impl::LoadTls() {
  const HttpOptions& o = options;
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!o.tls_client_ca_file.empty()) {
      return Status::Invalid("tls.client_ca: needs tls.cert and tls.key (mutual TLS is TLS)");
    }
    return Status::Ok();
  }
  if (o.tls_cert_file.empty()) return Status::Invalid("tls.cert: required with tls.key");
  if (o.tls_key_file.empty()) return Status::Invalid("tls.key: required with tls.cert");
  tls.emplace(ssl::context::tls_server);
  ssl::context& ctx = *tls;
  beast::error_code ec;
  // TLS 1.2 and 1.3 only; OpenSSL's default ciphers for them.
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::single_dh_use,
                  ec);
  auto fail = [this](const std::string& what, const beast::error_code& e) {
    tls.reset();
    return Status::Invalid(what + ": " + e.message());
  };
  if (ctx.use_certificate_chain_file(o.tls_cert_file, ec); ec) {
    return fail("tls.cert: cannot load " + o.tls_cert_file, ec);
  }
  ctx.use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
  const bool mismatch =
      ec && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH;
  if (ec && !mismatch) return fail("tls.key: cannot load " + o.tls_key_file, ec);
  if (mismatch || SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    tls.reset();
    return Status::Invalid("tls.key: " + o.tls_key_file + " is not the key of " + o.tls_cert_file);
  }
  if (!o.tls_client_ca_file.empty()) {
    if (ctx.load_verify_file(o.tls_client_ca_file, ec); ec) {
      return fail("tls.client_ca: cannot load " + o.tls_client_ca_file, ec);
    }
    // Ask for a certificate; a client without one still connects (the handler decides).
    ctx.set_verify_mode(ssl::verify_peer, ec);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.tls_client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.native_handle(), names);
    // Resumed sessions are refused without one when clients are verified.
    static const unsigned char kSessionContext[] = "gpuorch";
    SSL_CTX_set_session_id_context(ctx.native_handle(), kSessionContext,
                                   sizeof(kSessionContext) - 1);
  }
  return Status::Ok();
}

Result<int> HttpServer::Bind(const std::string& host, int port) {
  RaiseFileLimit();
  if (Status st = impl_->LoadTls(); !st.ok()) return st;
  beast::error_code ec;
  auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    tcp::resolver resolver(impl_->io);
    auto found = resolver.resolve(host, std::to_string(port), ec);
    if (ec || found.empty()) return Status::Invalid("listen: cannot resolve " + host);
    address = found.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  tcp::acceptor& a = impl_->acceptor;
  if (a.open(endpoint.protocol(), ec); ec) return Status::Invalid("listen: " + ec.message());
  a.set_option(asio::socket_base::reuse_address(true), ec);
  if (a.bind(endpoint, ec); ec) {
    return Status::Invalid("listen: cannot bind " + host + ":" + std::to_string(port) + ": " +
                           ec.message());
  }
  if (a.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return Status::Invalid("listen: " + ec.message());
  }
  return static_cast<int>(a.local_endpoint().port());
}

void HttpServer::Run() {
  if (impl_->stopped) return;
  impl_->Accept();
  impl_->stop_event.async_read_some(asio::buffer(&impl_->stop_word, sizeof(impl_->stop_word)),
                                    [impl = impl_.get()](beast::error_code ec, size_t) {
                                      if (!ec) impl->OnStop();
                                    });
  std::vector<std::thread> threads;
  for (int i = 1; i < impl_->options.io_threads; ++i) {
    threads.emplace_back([this] { impl_->io.run(); });
  }
  impl_->io.run();
  for (std::thread& t : threads) t.join();
}

void HttpServer::Stop() {
  if (impl_->stopped.exchange(true)) return;
  const uint64_t one = 1;
  if (impl_->stop_fd < 0 || ::write(impl_->stop_fd, &one, sizeof(one)) != sizeof(one)) {
    impl_->io.stop();  // no eventfd: stop at once
  }
}

void HttpServer::Impl::OnStop() {
  if (options.on_stop) options.on_stop();
  beast::error_code ignored;
  acceptor.close(ignored);
  WaitIdleThenStop(std::chrono::steady_clock::now() + kStopGrace);
}

void HttpServer::Impl::WaitIdleThenStop(std::chrono::steady_clock::time_point deadline) {
  if (busy == 0 || std::chrono::steady_clock::now() >= deadline) return io.stop();
  stop_timer.expires_after(std::chrono::milliseconds(10));
  stop_timer.async_wait([this, deadline](beast::error_code) { WaitIdleThenStop(deadline); });
}

void HttpServer::RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
  timer->async_wait([timer, fn = std::move(fn), impl = impl_.get()](beast::error_code ec) {
    if (!ec) asio::post(impl->workers, fn);
  });
}

int64_t HttpServer::connections() const { return impl_->connections.load(); }

}  // namespace gpuorch::server
