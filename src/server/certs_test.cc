// `gpuorch certs`: the CA and the certificates it issues verify as TLS expects them to, and
// the files are written as promised (modes, no overwriting).
#include "server/certs.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace gpuorch::server {
namespace {

namespace fs = std::filesystem;

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using Cert = std::unique_ptr<X509, X509Free>;

Cert ReadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  Cert c(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return c;
}

// X509_verify_cert of `leaf` against a store holding only the CA, for `purpose`.
int Verify(X509* ca, X509* leaf, int purpose) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx, purpose);
  const int ok = X509_verify_cert(ctx);
  const int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return ok == 1 ? X509_V_OK : err;
}

std::string CommonName(X509* cert) {
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

mode_t Mode(const std::string& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

class CertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gpuorch-certs-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(CertsTest, ChainVerifiesWithNamesAndUsages) {
  CertsOptions o;
  o.dir = dir_.string();
  o.hosts = {"gpu-master.example", "10.1.2.3", "::1"};
  o.nodes = {"node-a", "node-b"};
  auto written = InitCerts(o);
  ASSERT_TRUE(written.ok()) << written.status().message();
  EXPECT_EQ(written->size(), 8u);

  Cert ca = ReadCert(Path("ca.pem"));
  Cert server = ReadCert(Path("server.pem"));
  Cert agent = ReadCert(Path("agent-node-a.pem"));
  ASSERT_TRUE(ca && server && agent);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(Verify(ca.get(), server.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(Verify(ca.get(), agent.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  // Each certificate is good for its own side only.
  EXPECT_NE(Verify(ca.get(), server.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(Verify(ca.get(), agent.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);

  // The server's subjectAltName holds every host; nothing else matches.
  EXPECT_EQ(X509_check_host(server.get(), "gpu-master.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "10.1.2.3", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_NE(X509_check_host(server.get(), "other.example", 0, 0, nullptr), 1);
  EXPECT_EQ(CommonName(agent.get()), "node:node-a");
  EXPECT_EQ(CommonName(ReadCert(Path("agent-node-b.pem")).get()), "node:node-b");

  // A CA of another cluster verifies none of them.
  CertsOptions other;
  other.dir = Path("other");
  ASSERT_TRUE(InitCerts(other).ok());
  Cert other_ca = ReadCert(Path("other/ca.pem"));
  EXPECT_NE(Verify(other_ca.get(), server.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
}

TEST_F(CertsTest, KeysArePrivateAndCertificatesReadable) {
  CertsOptions o;
  o.dir = dir_.string();
  o.nodes = {"n1"};
  ASSERT_TRUE(InitCerts(o).ok());
  for (const char* key : {"ca.key", "server.key", "agent-n1.key"}) {
    EXPECT_EQ(Mode(Path(key)), 0600u) << key;
  }
  for (const char* cert : {"ca.pem", "server.pem", "agent-n1.pem"}) {
    EXPECT_EQ(Mode(Path(cert)), 0644u) << cert;
  }
}

TEST_F(CertsTest, DefaultHostsCoverLoopback) {
  CertsOptions o;
  o.dir = dir_.string();
  ASSERT_TRUE(InitCerts(o).ok());
  Cert server = ReadCert(Path("server.pem"));
  ASSERT_TRUE(server);
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
}

TEST_F(CertsTest, NeverOverwrites) {
  CertsOptions o;
  o.dir = dir_.string();
  ASSERT_TRUE(InitCerts(o).ok());
  Cert before = ReadCert(Path("ca.pem"));
  auto again = InitCerts(o);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().message(), Path("ca.pem") + ": exists; not overwriting");
  EXPECT_EQ(X509_cmp(before.get(), ReadCert(Path("ca.pem")).get()), 0);

  // One existing file stops the whole run: nothing is half-written.
  fs::remove(Path("ca.pem"));
  fs::remove(Path("ca.key"));
  fs::remove(Path("server.key"));
  again = InitCerts(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("server.pem: exists"), std::string::npos);
  EXPECT_FALSE(fs::exists(Path("ca.pem")));
}

TEST_F(CertsTest, AddNodeCertsUsesTheExistingCa) {
  CertsOptions o;
  o.dir = dir_.string();
  ASSERT_TRUE(InitCerts(o).ok());
  o.nodes = {"late"};
  auto added = AddNodeCerts(o);
  ASSERT_TRUE(added.ok()) << added.status().message();
  Cert ca = ReadCert(Path("ca.pem"));
  Cert agent = ReadCert(Path("agent-late.pem"));
  ASSERT_TRUE(agent);
  EXPECT_EQ(Verify(ca.get(), agent.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_FALSE(AddNodeCerts(o).ok());  // agent-late.pem exists
  o.dir = Path("nowhere");
  auto missing = AddNodeCerts(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nowhere/ca.pem: cannot read"), std::string::npos);
}

TEST_F(CertsTest, BadInputIsNamed) {
  struct Case {
    std::vector<std::string> hosts, nodes;
    std::string error;
  };
  const Case cases[] = {
      {{"a b"}, {}, "--hosts: 'a b' is not a host name or an IP address"},
      {{}, {"x/y"}, "--nodes: 'x/y' is not a node name (letters, digits, . _ -)"},
      {{}, {""}, "--nodes: '' is not a node name (letters, digits, . _ -)"},
  };
  for (const Case& c : cases) {
    CertsOptions o;
    o.dir = dir_.string();
    o.hosts = c.hosts;
    o.nodes = c.nodes;
    auto r = InitCerts(o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), c.error);
  }
  EXPECT_FALSE(fs::exists(Path("ca.pem")));
}

}  // namespace
}  // namespace gpuorch::server
