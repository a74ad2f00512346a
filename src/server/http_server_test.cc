// The HTTP front of `gpuorch server` (HttpServer under Server) over real loopback sockets:
// many idle keep-alive connections, long polls held without threads, and the answers the
// server gives by itself (413, 400, 503, idle close).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "server/server.h"

namespace gpuorch::server {
namespace {

// The Authorization header line of the running test's server (its bootstrap admin token).
std::string g_auth;
std::string Auth() { return g_auth; }

// A blocking client socket speaking raw HTTP/1.1, for what httplib's client cannot do
// (malformed requests, thousands of held connections).
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    timeval tv{30, 0};  // a hung server fails the test instead of hanging it
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool ok() const { return fd_ >= 0; }
  bool Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads one response; returns its status (0 when the connection closed or timed out
  // first) and fills `body`.
  int Read(std::string* body = nullptr) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return 0;
    }
    const std::string head = buf_.substr(0, end);
    size_t length = 0;
    size_t cl = head.find("Content-Length: ");
    if (cl != std::string::npos) length = std::stoul(head.substr(cl + 16));
    while (buf_.size() < end + 4 + length) {
      if (!Fill()) return 0;
    }
    if (body) *body = buf_.substr(end + 4, length);
    buf_.erase(0, end + 4 + length);
    return std::stoi(head.substr(9, 3));
  }
  int Get(const std::string& path, std::string* body = nullptr) {
    if (!Send("GET " + path + " HTTP/1.1\r\nHost: test\r\n" + Auth() + "\r\n")) return 0;
    return Read(body);
  }
  // True once the server has closed the connection (read returns end of file).
  bool ClosedByServer() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool Fill() {
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_) server_->Stop();
    if (serving_.joinable()) serving_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start(const std::string& yaml) {
    dir_ = std::filesystem::temp_directory_path() /
           ("gpuorch-http-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto config = ParseConfig("listen: 127.0.0.1:0\ndata: " + dir_.string() + "\n" + yaml);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto s = Server::Create(*config);
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = std::move(s).value();
    auto port = server_->Bind();
    ASSERT_TRUE(port.ok()) << port.status().message();
    port_ = *port;
    std::ifstream in(dir_ / "admin.token");
    std::getline(in, token_);
    ASSERT_FALSE(token_.empty()) << "the first start writes DATA/admin.token";
    g_auth = "Authorization: Bearer " + token_ + "\r\n";
    serving_ = std::thread([this] { server_->Serve(); });
  }
  std::unique_ptr<httplib::Client> Client() {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(30, 0);
    c->set_bearer_token_auth(token_);
    return c;
  }
  // Registers an emulated node with one GPU; returns the server's epoch for it.
  int64_t RegisterNode(const std::string& name) {
    const Json body = {{"name", name},
                       {"gpus", {{{"index", 0}, {"model", "H100"}, {"memory_mib", 81920}}}}};
    auto r = Client()->Post("/v1/agents/register", body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200);
    auto d = Client()->Get("/v1/agents/" + name + "/desired?wait_ms=0");
    EXPECT_TRUE(d && d->status == 200);
    return d ? Json::parse(d->body).value("epoch", int64_t{0}) : 0;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Server> server_;
  std::thread serving_;
  int port_ = 0;
  std::string token_;
};

TEST_F(HttpServerTest, ThousandsOfIdleKeepAliveConnectionsAndTheApiStillAnswers) {
  Start("io_threads: 1\nworker_threads: 2\n");
  constexpr int kConnections = 2000;
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < kConnections; ++i) {
    held.push_back(std::make_unique<RawConnection>(port_));
    ASSERT_TRUE(held.back()->ok()) << "connection " << i;
    ASSERT_EQ(held.back()->Get("/healthz"), 200) << "connection " << i;
  }
  EXPECT_GE(server_->connections(), kConnections);
  // With all of them open (and idle), the API answers on a new connection...
  auto r = Client()->Get("/v1/queues");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // ... and every held connection is still alive and served again (keep-alive).
  for (int i = 0; i < kConnections; i += 97) {
    std::string body;
    ASSERT_EQ(held[i]->Get("/v1/nodes", &body), 200) << "connection " << i;
    EXPECT_TRUE(Json::parse(body).contains("nodes"));
  }
  held.clear();
}

TEST_F(HttpServerTest, HeldWatchesTakeNoThreadAndAnswerOnChangeAndAtTheirDeadline) {
  // Two workers, many more watches held: if a watch held a thread, the API would stall.
  // A long node timeout: no held watch reaches its capped deadline during the test.
  Start("worker_threads: 2\nio_threads: 1\nnode_timeout_s: 600\n");
  constexpr int kWatches = 40;
  std::vector<std::unique_ptr<RawConnection>> watches;
  int64_t epoch = 0;
  for (int i = 0; i < kWatches; ++i) {
    const std::string node = "w" + std::to_string(i);
    epoch = RegisterNode(node);
    watches.push_back(std::make_unique<RawConnection>(port_));
    ASSERT_TRUE(
        watches.back()->Send("GET /v1/agents/" + node + "/desired?epoch=" + std::to_string(epoch) +
                             "&after=1&wait_ms=60000 HTTP/1.1\r\nHost: t\r\n" + Auth() + "\r\n"));
  }
  // The controller holds them all (nothing answered them: their version is current).
  for (int tries = 0; server_->controller().HeldWatches() < kWatches && tries < 3000; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server_->controller().HeldWatches(), kWatches);
  auto q = Client()->Get("/v1/queues");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->status, 200) << "the API answers while " << kWatches << " watches are held";

  // A submission bound to a node answers that node's watch with the new list.
  const Json job = {
      {"name", "j"}, {"queue", "default"}, {"gpus", 1}, {"command", {"sleep", "600"}}};
  auto sub = Client()->Post("/v1/workloads", job.dump(), "application/json");
  ASSERT_TRUE(sub);
  ASSERT_EQ(sub->status, 201) << sub->body;
  const int64_t id = Json::parse(sub->body)["id"];
  Json w;
  for (int tries = 0; tries < 3000; ++tries) {
    w = Json::parse(Client()->Get("/v1/workloads/" + std::to_string(id))->body);
    if (w["state"] == "Running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(w["state"], "Running");
  const std::string bound = w["tasks"][0]["node"];
  const int index = std::stoi(bound.substr(1));
  std::string body;
  ASSERT_EQ(watches[index]->Read(&body), 200);
  Json answer = Json::parse(body);
  ASSERT_EQ(answer["desired"].size(), 1u);
  EXPECT_EQ(answer["desired"][0]["workload"], id);
  EXPECT_GT(answer["version"].get<int64_t>(), 1);
  EXPECT_EQ(server_->controller().HeldWatches(), kWatches - 1);

  // A watch with a short wait is answered at its deadline with the unchanged list.
  const int other = index == 0 ? 1 : 0;
  RawConnection shortw(port_);
  ASSERT_TRUE(shortw.Get("/v1/agents/w" + std::to_string(other) +
                             "/desired?epoch=" + std::to_string(epoch) + "&after=1&wait_ms=200",
                         &body) == 200);
  answer = Json::parse(body);
  EXPECT_EQ(answer["version"], 1);
  EXPECT_TRUE(answer["desired"].empty());

  // Stopping the server answers the watches still held.
  server_->Stop();
  EXPECT_EQ(watches[other]->Read(&body), 200);
}

TEST_F(HttpServerTest, AWatchWhoseClientLeftNoLongerKeepsItsNodeAlive) {
  Start("node_timeout_s: 600\n");
  const int64_t epoch = RegisterNode("gone");
  {
    RawConnection watch(port_);
    ASSERT_TRUE(watch.Send("GET /v1/agents/gone/desired?epoch=" + std::to_string(epoch) +
                           "&after=1&wait_ms=60000 HTTP/1.1\r\nHost: t\r\n" + Auth() + "\r\n"));
    for (int tries = 0; server_->controller().HeldWatches() < 1 && tries < 3000; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(server_->controller().HeldWatches(), 1);
  }  // the agent's process ends: its connection closes
  for (int tries = 0; server_->controller().HeldWatches() > 0 && tries < 3000; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->controller().HeldWatches(), 0) << "dropped without waiting for its deadline";
  // A watch on a live connection is still answered, and the connection serves on.
  RawConnection watch(port_);
  ASSERT_EQ(
      watch.Get("/v1/agents/gone/desired?epoch=" + std::to_string(epoch) + "&after=1&wait_ms=100"),
      200);
  EXPECT_EQ(watch.Get("/healthz"), 200);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413) {
  Start("max_body_bytes: 2048\n");
  auto r = Client()->Post("/v1/workloads", std::string(4096, ' '), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  Json e = Json::parse(r->body);
  EXPECT_EQ(e["error"]["field"], "body");
  EXPECT_EQ(e["error"]["code"], 413);
  // Refused from the header alone: the body is never read.
  RawConnection raw(port_);
  ASSERT_TRUE(
      raw.Send("POST /v1/workloads HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n"));
  EXPECT_EQ(raw.Read(), 413);
  // A body within the limit is served.
  r = Client()->Post("/v1/workloads", "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << "parsed and refused by the API: " << r->body;
}

TEST_F(HttpServerTest, MalformedHttpIs400AndTheServerGoesOn) {
  Start("");
  const char* bad[] = {
      "GARBAGE\r\n\r\n",
      "GET /healthz HTTP/9.9\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
      "POST /v1/workloads HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const char* request : bad) {
    RawConnection raw(port_);
    ASSERT_TRUE(raw.Send(request));
    std::string body;
    EXPECT_EQ(raw.Read(&body), 400) << request;
    EXPECT_NE(body.find("\"code\":400"), std::string::npos) << body;
    EXPECT_TRUE(raw.ClosedByServer()) << request;
  }
  // Unknown routes and methods keep the API's answers.
  auto r = Client()->Get("/v1/nothing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Json::parse(r->body)["error"]["message"], "no such endpoint");
  r = Client()->Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
}

TEST_F(HttpServerTest, ConnectionsOverTheLimitGet503UntilOthersClose) {
  Start("max_connections: 8\n");
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<RawConnection>(port_));
    ASSERT_EQ(held.back()->Get("/healthz"), 200) << "connection " << i;
  }
  {
    RawConnection over(port_);
    std::string body;
    ASSERT_EQ(over.Get("/healthz", &body), 503);
    Json e = Json::parse(body);
    EXPECT_NE(e["error"]["message"].get<std::string>().find("max_connections 8"),
              std::string::npos);
    EXPECT_TRUE(over.ClosedByServer());
  }
  held.pop_back();
  // Once the server has seen a held connection close, a new one is served again.
  int status = 0;
  for (int tries = 0; tries < 3000 && status != 200; ++tries) {
    RawConnection again(port_);
    status = again.Get("/healthz");
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(held[0]->Get("/healthz"), 200) << "the connections held meanwhile still work";
}

TEST_F(HttpServerTest, IdleConnectionsAreClosed) {
  Start("idle_timeout_s: 1\n");
  RawConnection raw(port_);
  ASSERT_EQ(raw.Get("/healthz"), 200);
  EXPECT_TRUE(raw.ClosedByServer()) << "closed after a second without a request";
}

}  // namespace
}  // namespace gpuorch::server
