// Units of the security layer: the token format (what the fuzzer also drives), node name
// patterns, the audit log's durability, rotation and reading, and the configuration of
// queue priorities and the default queue.
#include "server/auth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "server/audit_log.h"
#include "server/config.h"
#include "server/token.h"

namespace gpuorch::server {
namespace {

const std::string kAccessor = "0123456789abcdef";
const std::string kSecret(64, 'a');
const std::string kGood = "gpo_" + kAccessor + "." + kSecret;

TEST(Token, ParsesWhatFormatWrites) {
  auto t = GenerateToken();
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(IsAccessor(t->accessor));
  EXPECT_EQ(t->secret.size(), kSecretLength);
  const std::string text = FormatToken(*t);
  EXPECT_EQ(text.size(), kTokenLength);
  auto back = ParseToken(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->accessor, t->accessor);
  EXPECT_EQ(back->secret, t->secret);
  EXPECT_NE(GenerateToken()->secret, t->secret);
  // A token file's trailing newline is no error.
  EXPECT_TRUE(ParseToken(text + "\n").ok());
}

TEST(Token, MalformedTokensSayWhatIsWrongWithoutTheSecret) {
  struct Case {
    std::string text;
    const char* says;
  };
  const Case cases[] = {
      {"", "empty"},
      {"   ", "empty"},
      {"abc_" + kAccessor + "." + kSecret, "not a gpuorch token"},
      {"gpo_" + kAccessor + "." + kSecret + "0", "wrong length"},
      {"gpo_" + kAccessor + "." + kSecret.substr(1), "wrong length"},
      {"gpo_0123456789ABCDEF." + kSecret, "accessor"},
      {"gpo_" + kAccessor + "-" + kSecret, "no '.'"},
      {"gpo_" + kAccessor + "." + std::string(63, 'a') + "g", "secret"},
      {"gpo_" + kAccessor + "." + std::string(63, 'a') + "\n", "wrong length"},
      {std::string("gpo_") + std::string(81, '\0'), "accessor"},
  };
  for (const Case& c : cases) {
    auto r = ParseToken(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().rfind("token: ", 0), 0u);
    EXPECT_EQ(r.status().message().find(std::string(40, 'a')), std::string::npos);
  }
}

TEST(Token, BearerHeaders) {
  EXPECT_TRUE(ParseBearer("Bearer " + kGood).ok());
  EXPECT_TRUE(ParseBearer("bearer  " + kGood).ok());
  EXPECT_TRUE(ParseBearer("BEARER\t" + kGood).ok());
  EXPECT_FALSE(ParseBearer(kGood).ok());
  EXPECT_FALSE(ParseBearer("Basic " + kGood).ok());
  EXPECT_FALSE(ParseBearer("Bearer").ok());
  EXPECT_FALSE(ParseBearer("Bearer ").ok());
  EXPECT_FALSE(ParseBearer("Bearerx" + kGood).ok());
}

TEST(Token, OnlyTheHashIsKeptAndComparedWhole) {
  const std::string h = HashSecret(kSecret);
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(h.find(kSecret), std::string::npos);
  EXPECT_TRUE(SecretMatches(kSecret, h));
  EXPECT_FALSE(SecretMatches(std::string(64, 'b'), h));
  EXPECT_FALSE(SecretMatches(kSecret, h.substr(0, 63)));
  EXPECT_FALSE(SecretMatches(kSecret, ""));
  // SHA-256("abc"), the FIPS 180-2 example.
  EXPECT_EQ(HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Auth, NodeNamePatterns) {
  struct Case {
    const char* pattern;
    const char* name;
    bool match;
  };
  const Case cases[] = {
      {"n1", "n1", true},
      {"n1", "n10", false},
      {"n*", "n10", true},
      {"n*", "m1", false},
      {"hollow-*", "hollow-00001", true},
      {"hollow-*", "hollow", false},
      {"*", "anything", true},
      {"a*b*c", "aXbYc", true},
      {"a*b*c", "aXbY", false},
      {"*-gpu", "rack1-gpu", true},
      {"", "", true},
      {"", "x", false},
      {"**", "x", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(NodeNameMatches(c.pattern, c.name), c.match) << c.pattern << " " << c.name;
  }
  // Long adversarial input stays fast (no exponential backtracking).
  EXPECT_FALSE(NodeNameMatches(std::string(50, '*') + "b", std::string(5000, 'a')));
}

TEST(Auth, RolesAreDefaultDeny) {
  Principal tenant;
  tenant.role = Role::kTenant;
  tenant.queues = {"a"};
  EXPECT_TRUE(tenant.ReadsQueue("a"));
  EXPECT_TRUE(tenant.WritesQueue("a"));
  EXPECT_FALSE(tenant.ReadsQueue("b"));
  EXPECT_FALSE(tenant.ManagesNodes());
  EXPECT_FALSE(tenant.ActsAsNode("n1"));
  Principal reader = tenant;
  reader.role = Role::kReader;
  EXPECT_TRUE(reader.ReadsQueue("a"));
  EXPECT_FALSE(reader.WritesQueue("a"));
  EXPECT_FALSE(reader.SeesEnv("a"));
  Principal op;
  op.role = Role::kOperator;
  EXPECT_TRUE(op.ReadsQueue("anything"));
  EXPECT_FALSE(op.WritesQueue("anything"));
  EXPECT_TRUE(op.ManagesNodes());
  Principal agent;
  agent.role = Role::kAgent;
  agent.node = "n1";
  EXPECT_TRUE(agent.ActsAsNode("n1"));
  EXPECT_FALSE(agent.ActsAsNode("n2"));
  EXPECT_FALSE(agent.ReadsCluster());
  EXPECT_FALSE(agent.ReadsQueue("a"));
  for (std::string_view name : {"admin", "operator", "tenant", "reader", "agent"}) {
    EXPECT_EQ(RoleName(*ParseRole(name)), name);
  }
  EXPECT_FALSE(ParseRole("root").ok());
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gpuorch-audit-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static AuditEntry Entry(int64_t ms, const std::string& id) {
    AuditEntry e;
    e.time_ms = ms;
    e.accessor = "0123456789abcdef";
    e.role = "tenant";
    e.verb = "submit";
    e.resource = "/v1/workloads";
    e.queue = "a";
    e.allowed = true;
    e.status = 201;
    e.request_id = id;
    e.source = "127.0.0.1:5000";
    return e;
  }
  std::filesystem::path dir_;
};

TEST_F(AuditLogTest, ConcurrentAppendsAreAllOnDiskOnePerLine) {
  auto log = AuditLog::Open((dir_ / "audit.log").string(), 64 << 20, 3);
  ASSERT_TRUE(log.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE(
            (*log)->Append(Entry(1000 + i, std::to_string(t) + "-" + std::to_string(i))).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  std::ifstream in(dir_ / "audit.log");
  std::set<std::string> ids;
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    ids.insert(j["request_id"].get<std::string>());
    EXPECT_EQ(j["decision"], "allow");
  }
  EXPECT_EQ(ids.size(), 400u);
  EXPECT_EQ(std::filesystem::status(dir_ / "audit.log").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_F(AuditLogTest, RotatesBySizeKeepsTheNewestAndReadsAcrossFiles) {
  auto log = AuditLog::Open((dir_ / "audit.log").string(), 4096, 2);
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE((*log)->Append(Entry(1000 * i, std::to_string(i))).ok());
  EXPECT_TRUE(std::filesystem::exists(dir_ / "audit.log.1"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "audit.log.2"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "audit.log.3"));
  for (const char* f : {"audit.log", "audit.log.1", "audit.log.2"}) {
    EXPECT_LE(std::filesystem::file_size(dir_ / f), 4096u) << f;
  }
  Json all = (*log)->Read("", 100000);
  ASSERT_FALSE(all["entries"].empty());
  EXPECT_EQ(all["entries"].back()["request_id"], "199") << "the newest is last";
  auto id = [&](size_t i) {
    return std::stoll(all["entries"][i]["request_id"].get<std::string>());
  };
  for (size_t i = 1; i < all["entries"].size(); ++i) {
    EXPECT_EQ(id(i), id(i - 1) + 1) << "in order, none missing";
  }
  Json since = (*log)->Read(IsoTimeMs(195 * 1000), 100000);
  EXPECT_EQ(since["entries"].size(), 5u);
  Json limited = (*log)->Read("", 3);
  ASSERT_EQ(limited["entries"].size(), 3u);
  EXPECT_TRUE(limited["truncated"].get<bool>());
  EXPECT_EQ(limited["entries"][2]["request_id"], "199");
}

TEST(IsoTime, FormatsAndChecks) {
  EXPECT_EQ(IsoTimeMs(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(IsoTimeMs(1764681876123), "2025-12-02T13:24:36.123Z");
  EXPECT_TRUE(IsIsoTimeMs("2026-12-02T13:00:00.000Z"));
  EXPECT_FALSE(IsIsoTimeMs("2026-12-02T13:00:00Z"));
  EXPECT_FALSE(IsIsoTimeMs("yesterday"));
}

TEST(Config, PriorityClassesPerQueueAndTheDefaultQueue) {
  auto c = ParseConfig(R"(
queues:
  - {name: prod, allowed_priorities: [production, normal]}
  - {name: research}
)");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->AllowsPriority("prod", "production"));
  EXPECT_FALSE(c->AllowsPriority("prod", "opportunistic"));
  EXPECT_TRUE(c->AllowsPriority("research", "normal"));
  EXPECT_FALSE(c->AllowsPriority("research", "production")) << "non-preemptible needs a grant";
  EXPECT_TRUE(c->AllowsNonPreemptible("prod"));
  EXPECT_FALSE(c->AllowsNonPreemptible("research"));
  EXPECT_EQ(c->default_queue, "") << "no queue is called default";
  EXPECT_EQ(ParseConfig("")->default_queue, "default");
  EXPECT_EQ(ParseConfig("queues: [{name: a}, {name: b}]\ndefault_queue: b")->default_queue, "b");
  struct Case {
    const char* yaml;
    const char* starts_with;
  };
  const Case bad[] = {
      {"queues: [{name: a, allowed_priorities: [gold]}]",
       "queues[0].allowed_priorities: no priority class named gold"},
      {"queues: [{name: a, allowed_priorities: []}]", "queues[0].allowed_priorities: must be"},
      {"default_queue: nope", "default_queue: no leaf queue named nope"},
      {"queues: [{name: org}, {name: t, parent: org}]\ndefault_queue: org",
       "default_queue: no leaf queue"},
      {"audit_keep: 0", "audit_keep"},
      {"audit_max_bytes: 10", "audit_max_bytes"},
      {"metrics_public: maybe", "metrics_public: wrong type"},
  };
  for (const Case& b : bad) {
    auto r = ParseConfig(b.yaml);
    ASSERT_FALSE(r.ok()) << b.yaml;
    EXPECT_EQ(r.status().message().rfind(b.starts_with, 0), 0u) << r.status().message();
  }
}

}  // namespace
}  // namespace gpuorch::server
