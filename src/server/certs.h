#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

// `gpuorch certs init DIR`: a private certificate authority for one cluster and the
// certificates its parts present (docs/operations.md, Certificates). OpenSSL 3; every key
// is ECDSA P-256, every certificate X.509 v3 signed with SHA-256.
//
//   ca.pem, ca.key            the CA (basicConstraints CA:TRUE, pathlen 0); give ca.pem to
//                             clients (--ca, GPUORCH_CA) and, for mutual TLS, to the server
//                             (tls.client_ca); keep ca.key offline
//   server.pem, server.key    the server (extendedKeyUsage serverAuth; subjectAltName: the
//                             hosts clients use in --server URLs)
//   agent-N.pem, agent-N.key  node N's agent (clientAuth; subject CN "node:N")
//
// Keys are written with mode 0600, certificates 0644. Nothing is overwritten: when one of
// the files exists, nothing is written at all.
namespace gpuorch::server {

// The subject common name of node N's client certificate, which mutual TLS ties to the node
// name the agent may act as (docs/security.md).
inline constexpr char kNodeCnPrefix[] = "node:";
std::string NodeCommonName(const std::string& node);

struct CertsOptions {
  std::string dir;                 // created (with its parents) when missing
  std::vector<std::string> hosts;  // the server's names and addresses; empty: DefaultHosts()
  std::vector<std::string> nodes;  // one client certificate each
  int64_t days = 825;              // validity of the server's and agents' certificates
  int64_t ca_days = 3650;
};

// localhost, 127.0.0.1, ::1 and this machine's host name.
std::vector<std::string> DefaultHosts();

// Creates the CA and the certificates; returns the paths written, in order. Errors name the
// file or the value at fault ("--hosts: 'a b' is not a host name or an IP address",
// "DIR/ca.pem: exists; not overwriting").
core::Result<std::vector<std::string>> InitCerts(const CertsOptions& options);

// Issues certificates for more nodes with the CA already in `options.dir` (ca.pem, ca.key);
// `hosts` is ignored. Returns the paths written.
core::Result<std::vector<std::string>> AddNodeCerts(const CertsOptions& options);

}  // namespace gpuorch::server
