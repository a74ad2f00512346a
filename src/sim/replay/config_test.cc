#include "sim/replay/config.h"

#include <gtest/gtest.h>

namespace gpuorch::sim {
namespace {

TEST(ClusterYaml, ExpandsGroupsIntoNodesAndRacks) {
  auto c = ParseClusterYaml(R"(rack_size: 2
node_groups:
  - {name: a, count: 3, gpus: 8, model: H100, gpu_memory_gib: 80, owner: team-a}
  - name: b
    count: 1
    gpus: 4
    model: A100
    rack: special
)",
                            "cluster.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->nodes.size(), 4u);
  EXPECT_EQ(c->nodes[0].name, "a-0");
  EXPECT_EQ(c->nodes[0].rack, "rack-0");
  EXPECT_EQ(c->nodes[1].rack, "rack-0");
  EXPECT_EQ(c->nodes[2].rack, "rack-1");
  EXPECT_EQ(c->nodes[3].rack, "special");
  EXPECT_EQ(c->nodes[0].gpu_memory_mib, 80 * 1024);
  EXPECT_EQ(c->owners[0], "team-a");
  EXPECT_EQ(c->owners[3], "");
  EXPECT_EQ(c->total_gpus(), 28);
  EXPECT_EQ(c->models.Name(c->nodes[3].gpu_model), "A100");
  // Round trip through the writer.
  auto again = ParseClusterYaml(ClusterToYaml(*c), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->nodes.size(), 4u);
}

TEST(ClusterYaml, ErrorsNameFileLineAndField) {
  struct Case {
    std::string text, want;
  };
  for (const Case& c : {
           Case{"node_groups:\n  - {name: a, count: 0}\n", "c.yaml:2: node_groups[0].count"},
           Case{"node_groups:\n  - {name: a, gpus: 17}\n", "c.yaml:2: node_groups[0].gpus"},
           Case{"node_groups:\n  - {name: a, colour: red}\n", "c.yaml:2: node_groups[0].colour"},
           Case{"node_groups:\n  - {count: 1}\n", "c.yaml:2: node_groups[0].name"},
           Case{"node_groups:\n  - {name: a}\n  - {name: a}\n", "c.yaml:3: node_groups[1].name"},
           Case{"node_groups: []\n", "c.yaml:1: node_groups"},
           Case{"node_groups:\n  - {name: a, count: x}\n", "c.yaml:2: node_groups[0].count"},
           Case{"node_groups: [\n", "c.yaml:"},
       }) {
    auto r = ParseClusterYaml(c.text, "c.yaml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
  }
}

TEST(QueuesYaml, ReadsQueuesAndRejectsBadOnes) {
  auto q = ParseQueuesYaml(R"(queues:
  - {name: prod, guarantee: 16, limit: 32, weight: 2, can_borrow: false}
  - {name: "6214e9", guarantee: 8, limit: unlimited}
)",
                           "q.yaml");
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_EQ(q->queues.size(), 2u);
  EXPECT_EQ(q->queues[0].guarantee_milli, 16000);
  EXPECT_EQ(q->queues[0].limit_milli, 32000);
  EXPECT_FALSE(q->queues[0].can_borrow);
  EXPECT_EQ(q->queues[1].name, "6214e9");
  EXPECT_EQ(q->queues[1].limit_milli, core::kUnlimited);
  // A tree: parents come first; the YAML written back reads the same.
  auto tree = ParseQueuesYaml(
      "queues:\n  - {name: org, guarantee: 8}\n"
      "  - {name: team, parent: org, guarantee: 8}\n",
      "t.yaml");
  ASSERT_TRUE(tree.ok()) << tree.status().message();
  EXPECT_EQ(tree->queues[1].parent, "org");
  auto again = ParseQueuesYaml(QueuesToYaml(*tree), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->queues[1].parent, "org");
  // Names with quotes, backslashes and non-ASCII text are escaped when written back (a
  // long fuzz run found a name with a quote whose YAML did not read again).
  auto odd = ParseQueuesYaml(
      "queues:\n  - {name: 'say \"hi\" \\ caf\u00e9', guarantee: 1}\n"
      "  - {name: b, parent: 'say \"hi\" \\ caf\u00e9'}\n",
      "odd.yaml");
  ASSERT_TRUE(odd.ok()) << odd.status().message();
  auto odd_again = ParseQueuesYaml(QueuesToYaml(*odd), "again.yaml");
  ASSERT_TRUE(odd_again.ok()) << odd_again.status().message() << "\n" << QueuesToYaml(*odd);
  EXPECT_EQ(odd_again->queues[0].name, "say \"hi\" \\ caf\u00e9");
  EXPECT_EQ(odd_again->queues[1].parent, odd->queues[0].name);
  struct Case {
    std::string text, want;
  };
  for (const Case& c : {
           Case{"queues:\n  - {name: caf\xE9}\n", "q.yaml: not UTF-8 text (byte 22)"},
           Case{std::string("queues:\n  - {name: !\0N}\n", 24), "queues[0].name: not UTF-8 text"},
           Case{"? ?\n", "q.yaml:1: queues: keys must be field names"},
           Case{"queues:\n  - {? [x]: 1}\n", "queues[0]: keys must be field names"},
           Case{"queues:\n  - {name: a, guarantee: 8, limit: 4}\n", "q.yaml:2: queues[0].limit"},
           Case{"queues:\n  - {name: a, guarantee: -1}\n", "q.yaml:2: queues[0].guarantee"},
           Case{"queues:\n  - {name: a, weight: 0}\n", "q.yaml:2: queues[0].weight"},
           Case{"queues:\n  - {name: a, can_borrow: perhaps}\n", "q.yaml:2: queues[0].can_borrow"},
           Case{"tenants: []\n", "q.yaml:1: queues.tenants"},
           Case{"queues:\n  - {name: a, parent: b}\n  - {name: b}\n",
                "q.yaml:2: queues[0].parent: must name an earlier queue"},
       }) {
    auto r = ParseQueuesYaml(c.text, "q.yaml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace gpuorch::sim
