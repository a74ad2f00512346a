// `gpuorch certs`: a private CA for one cluster and the certificates of its server and
// agents (server/certs.h; docs/operations.md, Certificates).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "server/certs.h"

namespace gpuorch::cli {
namespace {

struct CertsFlags {
  server::CertsOptions options;
};

int Report(const core::Result<std::vector<std::string>>& written, const char* what) {
  if (!written.ok()) {
    std::fprintf(stderr, "gpuorch certs %s: %s\n", what, written.status().message().c_str());
    return 1;
  }
  for (const std::string& path : *written) std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace

void RegisterCertsCommand(CLI::App& app, int& exit_code) {
  auto* certs = app.add_subcommand("certs", "Create a cluster CA and TLS certificates");
  certs->require_subcommand(1);
  auto flags = std::make_shared<CertsFlags>();
  server::CertsOptions& o = flags->options;

  auto* init = certs->add_subcommand(
      "init", "Create DIR/ca.pem, ca.key, server.pem, server.key and agent-NODE.pem/.key");
  init->add_option("dir", o.dir, "Directory for the files (created when missing)")->required();
  init->add_option("--hosts", o.hosts,
                   "Names and addresses clients reach the server by, comma separated (default: "
                   "localhost,127.0.0.1,::1 and this host's name)")
      ->delimiter(',');
  init->add_option("--nodes", o.nodes,
                   "Nodes to issue agent certificates for (mutual TLS), comma separated")
      ->delimiter(',');
  init->add_option("--days", o.days, "Validity of the server and agent certificates")
      ->capture_default_str();
  init->callback([flags, &exit_code] {
    exit_code = Report(server::InitCerts(flags->options), "init");
    if (exit_code != 0) return;
    const std::string& d = flags->options.dir;
    std::printf(
        "\nserver:  gpuorch server --tls-cert %s/server.pem --tls-key %s/server.key"
        "%s\nclients: --server https://HOST:PORT --ca %s/ca.pem (or GPUORCH_CA=%s/ca.pem)\n"
        "keep %s/ca.key offline: whoever holds it can issue certificates for this cluster\n",
        d.c_str(), d.c_str(),
        flags->options.nodes.empty() ? "" : (" --tls-client-ca " + d + "/ca.pem").c_str(),
        d.c_str(), d.c_str(), d.c_str());
  });

  auto* add = certs->add_subcommand(
      "add-nodes", "Issue agent certificates for more nodes with the CA in DIR (ca.pem, ca.key)");
  add->add_option("dir", o.dir, "Directory of gpuorch certs init")->required();
  add->add_option("--nodes", o.nodes, "Nodes, comma separated")->required()->delimiter(',');
  add->add_option("--days", o.days, "Validity of the certificates")->capture_default_str();
  add->callback([flags, &exit_code] {
    exit_code = Report(server::AddNodeCerts(flags->options), "add-nodes");
  });
}

}  // namespace gpuorch::cli
