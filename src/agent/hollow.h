#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/gpu.h"
#include "core/status.h"

namespace gpuorch::agent {

struct HollowOptions {
  std::string server_url = "http://127.0.0.1:7480";
  // A join token valid for "<prefix>-*" (or an agent token of a wider pattern).
  std::string token;
  std::string name_prefix = "hollow";  // nodes are <prefix>-00001, <prefix>-00002, ...
  int count = 0;
  EmulatedSpec gpus;  // every node's GPUs
  bool mig = false;   // --emulate-mig: every GPU in MIG mode (agent/mig.h, emulated)
  std::string zone;
  std::string rack;
  int64_t cpu_milli = 0;   // per node; 0: 16 CPUs per GPU
  int64_t memory_mib = 0;  // per node; 0: 128 GiB per GPU
  int64_t heartbeat_ms = 500;
  // Threads that carry all nodes' connections (each node lives on one of them).
  int threads = 2;
  // New registrations per second at start, so that 10,000 nodes do not stampede.
  int register_per_s = 500;
  // host:port of the shared log endpoint that every node registers as its `address`.
  std::string listen = "127.0.0.1:0";
  // How often Run() prints its summary line.
  int64_t summary_ms = 5000;
};

// What the fleet's nodes are doing, summed over all of them.
struct HollowSummary {
  int nodes = 0;
  int registered = 0;  // registered and the last contact succeeded
  int failing = 0;     // the last contact failed (unreachable, refused, bad answer)
  int64_t tasks_running = 0;
  int64_t tasks_started = 0;
  int64_t tasks_exited = 0;
};

// Hollow nodes (kubemark's name for them): `count` emulated agents in one process, for
// scale tests of the control plane. Each node has its own name, its own emulated GPUs
// (registration backend "emulated") and its own two HTTP/1.1 connections to the server,
// one for register and heartbeats and one for the long-poll watch, exactly as a real
// agent: it is the agent's own NodeSession (agent/node_session.h) over an
// EmulatedExecutor (agent/emulated_executor.h), so it speaks the same protocol, and its
// tasks run no process.
//
// The connections are Boost.Beast asynchronous ones driven by C++20 coroutines on
// `threads` io_contexts, one thread each; a node's two coroutines (control loop and watch)
// always run on the same thread, so a node's session needs no lock. Registrations are
// staggered at `register_per_s`, and failing nodes back off (the session's doubling, plus
// jitter so that nodes failing together do not retry together). Logging is one summary
// line every `summary_ms`, never a line per node.
//
// Run() belongs to one thread; Shutdown() may be called from any thread. Shutting down
// closes every connection; the server later finds the nodes Down and their tasks lost.
class HollowFleet {
 public:
  static core::Result<std::unique_ptr<HollowFleet>> Create(HollowOptions options);
  ~HollowFleet();

  // Runs every node until Shutdown().
  void Run();
  void Shutdown();
  // Safe from any thread while Run() runs.
  HollowSummary Summary() const;
  const std::string& log_address() const;

 private:
  struct Impl;
  explicit HollowFleet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpuorch::agent
