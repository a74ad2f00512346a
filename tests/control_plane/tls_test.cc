// TLS end to end with the built binary: `gpuorch certs init`, a server with --tls-cert,
// --tls-key and --tls-client-ca, the CLI over https with --ca (and the errors without it),
// and an agent that presents its node's certificate and runs a task.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>

#include "cluster.h"

namespace gpuorch::cptest {
namespace {

namespace fs = std::filesystem;

class TlsEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path().string() + "/gpuorch-cp-tls-" + std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    port_ = FreePort();
    url_ = "https://127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    agent_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }
  // The CLI against this server with the administrator's token (and `extra` flags).
  CliResult Cli(std::vector<std::string> args, const std::vector<std::string>& extra) {
    // After the subcommand: a command after `--` must stay last.
    args.insert(args.begin() + 1, extra.begin(), extra.end());
    args.insert(args.begin() + 1, {"--server", url_, "--token-file", dir_ + "/data/admin.token"});
    return RunCli(GPUORCH_BIN, args);
  }

  std::string dir_;
  int port_ = 0;
  std::string url_;
  std::unique_ptr<Process> server_, agent_;
};

TEST_F(TlsEndToEnd, CertsInitThenHttpsWithCaAndAnAgentWithItsNodeCertificate) {
  const std::string certs = dir_ + "/certs";
  CliResult init = RunCli(GPUORCH_BIN, {"certs", "init", certs, "--nodes", "node-a"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_NE(init.out.find("wrote " + certs + "/agent-node-a.key"), std::string::npos) << init.out;
  CliResult again = RunCli(GPUORCH_BIN, {"certs", "init", certs});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find(certs + "/ca.pem: exists; not overwriting"), std::string::npos)
      << again.err;

  server_ = std::make_unique<Process>(
      std::vector<std::string>{GPUORCH_BIN, "server", "--listen",
                               "127.0.0.1:" + std::to_string(port_), "--data", dir_ + "/data",
                               "--tls-cert", certs + "/server.pem", "--tls-key",
                               certs + "/server.key", "--tls-client-ca", certs + "/ca.pem"},
      std::map<std::string, std::string>{}, dir_ + "/server.log");
  const std::vector<std::string> ca = {"--ca", certs + "/ca.pem"};
  ASSERT_TRUE(WaitFor([&] { return Cli({"queues"}, ca).exit_code == 0; }))
      << ReadFile(dir_ + "/server.log");
  EXPECT_NE(ReadFile(dir_ + "/server.log").find("listening on https://127.0.0.1:"),
            std::string::npos);

  // Without the CA, and over plain HTTP, the CLI says what is wrong.
  CliResult untrusted = Cli({"queues"}, {});
  EXPECT_NE(untrusted.exit_code, 0);
  EXPECT_NE(untrusted.err.find("cannot verify the server's certificate: "), std::string::npos)
      << untrusted.err;
  EXPECT_NE(untrusted.err.find("(give --ca or GPUORCH_CA)"), std::string::npos) << untrusted.err;
  CliResult plain =
      RunCli(GPUORCH_BIN, {"queues", "--server", "http://127.0.0.1:" + std::to_string(port_)});
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("this server speaks HTTPS"), std::string::npos) << plain.err;

  // The agent verifies the server with --ca and presents node-a's certificate.
  std::vector<std::string> agent = {GPUORCH_BIN,
                                    "agent",
                                    "--server",
                                    url_,
                                    "--ca",
                                    certs + "/ca.pem",
                                    "--tls-cert",
                                    certs + "/agent-node-a.pem",
                                    "--tls-key",
                                    certs + "/agent-node-a.key",
                                    "--name",
                                    "node-a",
                                    "--token-file",
                                    dir_ + "/data/admin.token",
                                    "--emulate-gpus",
                                    "1xH100-80GB",
                                    "--metrics-listen",
                                    "127.0.0.1:0",
                                    "--data",
                                    dir_ + "/agent",
                                    "--heartbeat-ms",
                                    "100",
                                    "--cgroup-parent",
                                    "off",
                                    "--task-user",
                                    std::to_string(::geteuid())};
  if (::geteuid() == 0) agent.push_back("--allow-root-tasks");
  agent_ =
      std::make_unique<Process>(agent, std::map<std::string, std::string>{}, dir_ + "/agent.log");
  ASSERT_TRUE(WaitFor([&] {
    CliResult nodes = Cli({"nodes", "-o", "json"}, ca);
    return nodes.exit_code == 0 && nodes.out.find("\"Ready\"") != std::string::npos;
  })) << ReadFile(dir_ + "/agent.log");
  CliResult submit = Cli({"submit", "--gpus", "1", "--", "true"}, ca);
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = submit.out.substr(0, submit.out.find('\n'));
  EXPECT_TRUE(WaitFor([&] {
    CliResult get = Cli({"get", id, "-o", "json"}, ca);
    return get.out.find("\"Succeeded\"") != std::string::npos;
  })) << ReadFile(dir_ + "/agent.log");
}

}  // namespace
}  // namespace gpuorch::cptest
