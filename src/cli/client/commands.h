#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/client/submit_spec.h"

namespace gpuorch::cli {

// Where a command writes and what time it is. Tests pass string streams and a fixed clock,
// which is what makes AGE columns and error output checkable.
struct Io {
  std::ostream& out;
  std::ostream& err;
  std::function<std::chrono::system_clock::time_point()> now;
};

// Flags every client command shares.
struct CommonArgs {
  std::string server;            // --server URL
  std::string output = "table";  // -o, for the commands that show objects
  std::string token_file;        // --token-file
  std::string ca_file;           // --ca or GPUORCH_CA: the CA of an https:// server
  // The token itself; when empty, LoadToken(token_file) finds one (credentials.h).
  std::string token;
};

struct GetArgs {
  std::optional<int64_t> id;
  std::string queue;
  std::string state;
  std::string kind;
};

// `gpuorch nodes`: one page of `limit` nodes (0: all) after the node named `after`.
struct NodesArgs {
  int64_t limit = 100;
  std::string after;
  bool gpus = false;  // one row per GPU, with its telemetry
};

// Each command talks to the server once per object, writes its result to io.out and its
// errors ("error: ...") to io.err, and returns the process exit code (ExitCode). None
// throws. Contracts of what they print are in docs/cli.md.
int RunSubmit(const CommonArgs& common, const SubmitFlags& flags, const Io& io);
int RunGet(const CommonArgs& common, const GetArgs& args, const Io& io);
int RunDescribe(const CommonArgs& common, int64_t id, const Io& io);
// Cancels every id even when one is refused (exit 1 at the end); stops at the first
// unreachable-server error, since the rest would fail the same way.
int RunCancel(const CommonArgs& common, const std::vector<int64_t>& ids, const Io& io);
// Pins service `id` at `replicas`, or unpins it (nullopt); prints what it did.
int RunScale(const CommonArgs& common, int64_t id, std::optional<int64_t> replicas, const Io& io);
// Reports `in_flight` requests of service `id` (POST /v1/workloads/{id}/load).
int RunLoad(const CommonArgs& common, int64_t id, double in_flight, const Io& io);
// `offset` (from the start) or `tail` (the last bytes) select a part of the log; -1: not
// given. The server answers at most its max_log_bytes: a note on stderr says when the output
// is not the whole log.
int RunLogs(const CommonArgs& common, int64_t id, int64_t task, const std::string& stream,
            int64_t offset, int64_t tail, const Io& io);
int RunQueues(const CommonArgs& common, const std::string& name, const Io& io);
// Tables start with a summary of all nodes by status and GPU model, and end with how to
// ask for the next page when more nodes follow.
int RunNodes(const CommonArgs& common, const NodesArgs& args, const Io& io);
int RunDrain(const CommonArgs& common, const std::string& node, bool drain, const Io& io);
// Prints the nodes as Prometheus file-based service discovery targets (every node, one
// answer; RenderPrometheusTargets).
int RunPrometheusTargets(const CommonArgs& common, int port, const Io& io);

}  // namespace gpuorch::cli
