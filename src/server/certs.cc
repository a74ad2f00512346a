#include "server/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

namespace gpuorch::server {

using core::Result;
using core::Status;

namespace {

#define CERTS_TRY(expr)                \
  do {                                 \
    ::gpuorch::core::Status s_ = expr; \
    if (!s_.ok()) return s_;           \
  } while (0)

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;
using Bio = std::unique_ptr<BIO, Free>;

// The newest OpenSSL error, for messages ("" when its queue is empty).
std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool IsHostName(const std::string& s) {
  if (s.empty() || s.size() > 253 || s.front() == '-' || s.front() == '.') return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '*') {
      return false;
    }
  }
  return true;
}

// Node names as the server accepts them (auth.cc), without patterns.
bool IsNodeName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, Free> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Status::Invalid(std::string(OBJ_nid2sn(nid)) + " '" + value + "': " + OpenSslError());
  }
  return Status::Ok();
}

Result<Key> NewKey() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) return Status::Precondition("generating a P-256 key: " + OpenSslError());
  return key;
}

struct Subject {
  std::string cn;
  bool ca = false;
  std::string usage;  // extendedKeyUsage: "serverAuth" or "clientAuth"
  std::string san;    // subjectAltName, "" for none
  int64_t days = 0;
};

// A certificate for `key`, signed by `issuer_key`; `issuer` null: self-signed.
Result<Cert> Issue(const Subject& s, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  std::unique_ptr<BIGNUM, Free> serial(BN_new());
  if (!cert || !serial) return Status::Precondition("out of memory");
  X509_set_version(cert.get(), 2);  // v3
  // 127 random bits: positive, unique without a serial-number file.
  if (BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return Status::Precondition("serial number: " + OpenSslError());
  }
  // An hour in the past: clocks of a cluster differ a little.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(s.days) * 86'400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("gpuorch"), -1, -1, 0);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(s.cn.c_str()), -1, -1,
                                 0) != 1) {
    return Status::Invalid("subject CN '" + s.cn + "': " + OpenSslError());
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  CERTS_TRY(AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash"));
  CERTS_TRY(AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
  if (s.ca) {
    CERTS_TRY(
        AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    CERTS_TRY(AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    CERTS_TRY(AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    CERTS_TRY(AddExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    CERTS_TRY(AddExtension(cert.get(), signer, NID_ext_key_usage, s.usage));
  }
  if (!s.san.empty()) {
    CERTS_TRY(AddExtension(cert.get(), signer, NID_subject_alt_name, s.san));
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return Status::Precondition("signing " + s.cn + ": " + OpenSslError());
  }
  return cert;
}

std::string Pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string Pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// Creates `path` (never replacing a file) with `mode`, and writes `text`.
Status WriteNew(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Status::Exists(path + ": exists; not overwriting");
    return Status::Invalid(path + ": " + std::strerror(errno));
  }
  (void)::fchmod(fd, mode);  // whatever the umask says
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Status::Invalid(path + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status::Invalid(path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct Output {
  std::string path;
  std::string text;
  mode_t mode;
};

// Refuses when any file exists, then writes them all.
Result<std::vector<std::string>> WriteAll(const std::vector<Output>& outputs) {
  for (const Output& o : outputs) {
    if (Exists(o.path)) return Status::Exists(o.path + ": exists; not overwriting");
  }
  std::vector<std::string> written;
  for (const Output& o : outputs) {
    CERTS_TRY(WriteNew(o.path, o.text, o.mode));
    written.push_back(o.path);
  }
  return written;
}

Status CheckOptions(const CertsOptions& o) {
  if (o.dir.empty()) return Status::Invalid("DIR: required");
  if (o.days < 1 || o.days > 36'500) return Status::Invalid("--days: must be in 1..36500");
  for (const std::string& n : o.nodes) {
    if (!IsNodeName(n)) {
      return Status::Invalid("--nodes: '" + n + "' is not a node name (letters, digits, . _ -)");
    }
  }
  return Status::Ok();
}

// Node certificates (and their files) signed by the CA.
Status AddNodes(const CertsOptions& o, X509* ca, EVP_PKEY* ca_key, std::vector<Output>& out) {
  for (const std::string& node : o.nodes) {
    auto key = NewKey();
    if (!key.ok()) return key.status();
    auto cert = Issue(Subject{NodeCommonName(node), false, "clientAuth", "", o.days}, key->get(),
                      ca, ca_key);
    if (!cert.ok()) return cert.status();
    const std::string base = o.dir + "/agent-" + node;
    out.push_back({base + ".pem", Pem(cert->get()), 0644});
    out.push_back({base + ".key", Pem(key->get()), 0600});
  }
  return Status::Ok();
}

}  // namespace

std::string NodeCommonName(const std::string& node) { return kNodeCnPrefix + node; }

std::vector<std::string> DefaultHosts() {
  std::vector<std::string> hosts = {"localhost", "127.0.0.1", "::1"};
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0' &&
      std::string(name) != "localhost") {
    hosts.emplace_back(name);
  }
  return hosts;
}

Result<std::vector<std::string>> InitCerts(const CertsOptions& options) {
  CERTS_TRY(CheckOptions(options));
  const std::vector<std::string> hosts = options.hosts.empty() ? DefaultHosts() : options.hosts;
  std::string san;
  for (const std::string& h : hosts) {
    if (IsIp(h)) {
      san += (san.empty() ? "" : ",") + std::string("IP:") + h;
    } else if (IsHostName(h)) {
      san += (san.empty() ? "" : ",") + std::string("DNS:") + h;
    } else {
      return Status::Invalid("--hosts: '" + h + "' is not a host name or an IP address");
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return Status::Invalid(options.dir + ": " + ec.message());
  auto ca_key = NewKey();
  if (!ca_key.ok()) return ca_key.status();
  auto ca = Issue(Subject{"gpuorch cluster CA", true, "", "", options.ca_days}, ca_key->get(),
                  nullptr, ca_key->get());
  if (!ca.ok()) return ca.status();
  auto server_key = NewKey();
  if (!server_key.ok()) return server_key.status();
  auto server = Issue(Subject{hosts.front(), false, "serverAuth", san, options.days},
                      server_key->get(), ca->get(), ca_key->get());
  if (!server.ok()) return server.status();
  std::vector<Output> out = {{options.dir + "/ca.pem", Pem(ca->get()), 0644},
                             {options.dir + "/ca.key", Pem(ca_key->get()), 0600},
                             {options.dir + "/server.pem", Pem(server->get()), 0644},
                             {options.dir + "/server.key", Pem(server_key->get()), 0600}};
  CERTS_TRY(AddNodes(options, ca->get(), ca_key->get(), out));
  return WriteAll(out);
}

Result<std::vector<std::string>> AddNodeCerts(const CertsOptions& options) {
  CERTS_TRY(CheckOptions(options));
  if (options.nodes.empty()) return Status::Invalid("--nodes: required");
  const std::string ca_path = options.dir + "/ca.pem", key_path = options.dir + "/ca.key";
  Bio ca_bio(BIO_new_file(ca_path.c_str(), "r"));
  Cert ca(ca_bio ? PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!ca) return Status::Invalid(ca_path + ": cannot read a certificate: " + OpenSslError());
  Bio key_bio(BIO_new_file(key_path.c_str(), "r"));
  Key ca_key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!ca_key) return Status::Invalid(key_path + ": cannot read a private key: " + OpenSslError());
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return Status::Invalid(key_path + ": not the key of " + ca_path);
  }
  std::vector<Output> out;
  CERTS_TRY(AddNodes(options, ca.get(), ca_key.get(), out));
  return WriteAll(out);
}

}  // namespace gpuorch::server
