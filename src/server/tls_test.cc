// The API over TLS (HttpServer with tls: {cert, key, client_ca}) on real loopback sockets:
// clients that trust the cluster CA are served, others fail verification, plain HTTP and
// stalled handshakes are dealt with, long polls work through TLS, and mutual TLS ties an
// agent's certificate to its node.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "server/certs.h"
#include "server/server.h"

namespace gpuorch::server {
namespace {

namespace fs = std::filesystem;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // httplib's TLS client writes without MSG_NOSIGNAL; gpuorch's main() ignores SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    dir_ = fs::temp_directory_path() /
           ("gpuorch-tls-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    CertsOptions o;
    o.dir = (dir_ / "certs").string();
    o.nodes = {"node-a", "node-b"};
    auto written = InitCerts(o);
    ASSERT_TRUE(written.ok()) << written.status().message();
    CertsOptions other;
    other.dir = (dir_ / "other").string();
    other.nodes = {"node-a"};
    ASSERT_TRUE(InitCerts(other).ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (serving_.joinable()) serving_.join();
    server_.reset();
    fs::remove_all(dir_);
  }
  std::string Cert(const std::string& name) const { return (dir_ / "certs" / name).string(); }

  void Start(bool mutual, const std::string& yaml = "") {
    std::string tls =
        "tls:\n  cert: " + Cert("server.pem") + "\n  key: " + Cert("server.key") + "\n";
    if (mutual) tls += "  client_ca: " + Cert("ca.pem") + "\n";
    auto config =
        ParseConfig("listen: 127.0.0.1:0\ndata: " + (dir_ / "data").string() + "\n" + tls + yaml);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto s = Server::Create(*config);
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = std::move(s).value();
    auto port = server_->Bind();
    ASSERT_TRUE(port.ok()) << port.status().message();
    port_ = *port;
    std::ifstream in(dir_ / "data" / "admin.token");
    std::getline(in, token_);
    serving_ = std::thread([this] { server_->Serve(); });
  }

  // An https client that trusts `ca` ("" : the system's store only), optionally presenting
  // a client certificate.
  std::unique_ptr<httplib::Client> Client(const std::string& ca, const std::string& cert = "",
                                          const std::string& host = "127.0.0.1") {
    const std::string url = "https://" + host + ":" + std::to_string(port_);
    auto c = cert.empty()
                 ? std::make_unique<httplib::Client>(url)
                 : std::make_unique<httplib::Client>(url, Cert(cert + ".pem"), Cert(cert + ".key"));
    if (!ca.empty()) c->set_ca_cert_path(ca);
    c->set_connection_timeout(5, 0);
    c->set_read_timeout(30, 0);
    c->set_bearer_token_auth(token_);
    return c;
  }
  std::unique_ptr<httplib::Client> Trusting(const std::string& cert = "") {
    return Client(Cert("ca.pem"), cert);
  }

  static std::string RegisterBody(const std::string& node) {
    return Json{{"name", node},
                {"gpus", {{{"index", 0}, {"model", "H100"}, {"memory_mib", 81920}}}}}
        .dump();
  }

  fs::path dir_;
  std::unique_ptr<Server> server_;
  std::thread serving_;
  int port_ = 0;
  std::string token_;
};

int ConnectRaw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

TEST_F(TlsTest, ServesClientsThatTrustTheClusterCa) {
  Start(false);
  for (const char* host : {"127.0.0.1", "localhost"}) {
    auto c = Client(Cert("ca.pem"), "", host);
    auto health = c->Get("/healthz");
    ASSERT_TRUE(health) << host << ": " << httplib::to_string(health.error());
    EXPECT_EQ(health->status, 200);
    auto queues = c->Get("/v1/queues");  // the token travels inside TLS
    ASSERT_TRUE(queues);
    EXPECT_EQ(queues->status, 200);
  }
}

TEST_F(TlsTest, ClientsThatDoNotTrustTheCaFailVerification) {
  Start(false);
  for (const std::string& ca : {std::string(), (dir_ / "other" / "ca.pem").string()}) {
    auto c = Client(ca);
    auto r = c->Get("/healthz");
    ASSERT_FALSE(r) << "trusted without the cluster CA (" << ca << ")";
    EXPECT_EQ(r.error(), httplib::Error::SSLServerVerification);
    EXPECT_NE(c->get_openssl_verify_result(), X509_V_OK);
  }
  // The server goes on serving those that do.
  auto ok = Trusting()->Get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(TlsTest, PlainHttpToTheTlsPortIsToldSoAndTheServerKeepsServing) {
  Start(false);
  httplib::Client plain("127.0.0.1", port_);
  plain.set_read_timeout(10, 0);
  auto r = plain.Get("/healthz");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->body, "this server speaks HTTPS: use an https:// URL to reach it\n");
  // Bytes that are neither TLS nor HTTP: the connection is closed.
  const int fd = ConnectRaw(port_);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "\x01\x02garbage\r\n\r\n", 13, MSG_NOSIGNAL), 13);
  char c;
  EXPECT_LE(::recv(fd, &c, 1, 0), 0);
  ::close(fd);
  auto ok = Trusting()->Get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(TlsTest, AStalledHandshakeIsClosedAtTheIdleTimeout) {
  Start(false, "idle_timeout_s: 1\n");
  const int fd = ConnectRaw(port_);
  ASSERT_GE(fd, 0);
  const auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_LE(::recv(fd, &c, 1, 0), 0) << "the server closes a connection that never handshakes";
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  EXPECT_LT(waited, std::chrono::seconds(5));
  ::close(fd);
  for (int tries = 0; server_->connections() > 0 && tries < 500; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->connections(), 0);
}

TEST_F(TlsTest, LongPollsWorkThroughTlsAndSeeTheClientGo) {
  Start(false, "node_timeout_s: 600\n");
  auto c = Trusting();
  c->set_keep_alive(true);
  auto reg = c->Post("/v1/agents/register", RegisterBody("node-a"), "application/json");
  ASSERT_TRUE(reg);
  ASSERT_EQ(reg->status, 200) << reg->body;
  auto first = c->Get("/v1/agents/node-a/desired?wait_ms=0");
  ASSERT_TRUE(first);
  const Json list = Json::parse(first->body);
  const std::string query = "?epoch=" + std::to_string(list.value("epoch", int64_t{0})) +
                            "&after=" + std::to_string(list.value("version", int64_t{0}));
  // Held until its deadline, then answered; the same connection then serves the next request
  // (the server's watching read was cancelled under TLS and reading resumed).
  auto held = c->Get("/v1/agents/node-a/desired" + query + "&wait_ms=300");
  ASSERT_TRUE(held) << httplib::to_string(held.error());
  EXPECT_EQ(held->status, 200);
  auto next = c->Get("/v1/queues");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);

  // A client that gives up on a held watch: the server sees it go and drops the watch.
  auto quitter = Trusting();
  quitter->set_read_timeout(1, 0);
  auto gone = quitter->Get("/v1/agents/node-a/desired" + query + "&wait_ms=60000");
  EXPECT_FALSE(gone);
  quitter.reset();
  for (int tries = 0; server_->controller().HeldWatches() > 0 && tries < 500; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->controller().HeldWatches(), 0);
}

TEST_F(TlsTest, MutualTlsTiesAnAgentsCertificateToItsNode) {
  Start(true);
  // Users need no certificate: the API is theirs as before.
  auto user = Trusting()->Get("/v1/queues");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->status, 200);

  // An agent without a certificate is refused, even with an administrator's token.
  auto none = Trusting()->Post("/v1/agents/register", RegisterBody("node-a"), "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 403);
  EXPECT_NE(none->body.find("none was presented"), std::string::npos) << none->body;

  // Node A's certificate registers node A, not node B.
  auto a = Trusting("agent-node-a");
  auto own = a->Post("/v1/agents/register", RegisterBody("node-a"), "application/json");
  ASSERT_TRUE(own) << httplib::to_string(own.error());
  EXPECT_EQ(own->status, 200) << own->body;
  auto watch = a->Get("/v1/agents/node-a/desired?wait_ms=0");
  ASSERT_TRUE(watch);
  EXPECT_EQ(watch->status, 200) << watch->body;
  auto other = a->Post("/v1/agents/register", RegisterBody("node-b"), "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
  EXPECT_NE(other->body.find("the client certificate is for 'node:node-a', not 'node:node-b'"),
            std::string::npos)
      << other->body;
  for (const char* path : {"/v1/agents/node-b/heartbeat"}) {
    auto hb = a->Post(path, "{}", "application/json");
    ASSERT_TRUE(hb);
    EXPECT_EQ(hb->status, 403) << hb->body;
  }
  auto b_watch = a->Get("/v1/agents/node-b/desired?wait_ms=0");
  ASSERT_TRUE(b_watch);
  EXPECT_EQ(b_watch->status, 403);

  // A certificate from another CA does not get through the handshake.
  httplib::Client foreign("https://127.0.0.1:" + std::to_string(port_),
                          (dir_ / "other" / "agent-node-a.pem").string(),
                          (dir_ / "other" / "agent-node-a.key").string());
  foreign.set_ca_cert_path(Cert("ca.pem"));
  foreign.set_bearer_token_auth(token_);
  auto refused = foreign.Post("/v1/agents/register", RegisterBody("node-a"), "application/json");
  EXPECT_FALSE(refused && refused->status == 200);
}

TEST_F(TlsTest, BadTlsFilesAreNamedAtStart) {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::string missing = (dir_ / "nope.pem").string();
  const Case cases[] = {
      {"tls: {cert: " + missing + ", key: " + Cert("server.key") + "}",
       "tls.cert: cannot load " + missing},
      {"tls: {cert: " + Cert("server.pem") + ", key: " + Cert("agent-node-a.key") + "}",
       "tls.key: " + Cert("agent-node-a.key") + " is not the key of " + Cert("server.pem")},
      {"tls: {cert: " + Cert("server.pem") + ", key: " + Cert("server.key") +
           ", client_ca: " + missing + "}",
       "tls.client_ca: cannot load " + missing},
  };
  for (const Case& c : cases) {
    auto config =
        ParseConfig("listen: 127.0.0.1:0\ndata: " + (dir_ / "data").string() + "\n" + c.yaml);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto s = Server::Create(*config);
    ASSERT_TRUE(s.ok()) << s.status().message();
    auto port = (*s)->Bind();
    ASSERT_FALSE(port.ok()) << c.yaml;
    EXPECT_EQ(port.status().message().rfind(c.error, 0), 0u) << port.status().message();
  }
  // What the config parser itself refuses.
  EXPECT_EQ(ParseConfig("tls: {cert: a.pem}").status().message(),
            "tls.key: required with tls.cert");
  EXPECT_EQ(ParseConfig("tls: {key: a.key}").status().message(), "tls.cert: required with tls.key");
  EXPECT_EQ(ParseConfig("tls: {client_ca: ca.pem}").status().message(),
            "tls.client_ca: needs tls.cert and tls.key (mutual TLS is TLS)");
  EXPECT_EQ(ParseConfig("tls: {certificate: a.pem}").status().message(),
            "tls.certificate: unknown field");
}

}  // namespace
}  // namespace gpuorch::server
