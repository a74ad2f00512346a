#pragma once

// The LLM emulator's model, apart from HTTP (examples/llm-emulator/README in
// docs/inference.md, "The LLM emulator and load generator"). An emulator, not a model: no
// weights, no tokens computed; it only takes as long as a vLLM-like server would and reports
// vLLM's metric names, so that autoscaling, routing and draining can be tested for real.
//
// The delay of one request is prefill + decode:
//   prefill = prompt_tokens / prefill_tokens_per_s
//   decode  = max_tokens * decode_ms_per_token * (1 + (running - 1) / batch_knee) / 1000
// where `running` counts the sequences in the batch when the request is admitted (itself
// included): a lone request decodes at full speed, and each batch_knee more sequences add one
// more per-token time, the way continuous batching trades latency for throughput.
// At most max_num_seqs requests run; the others wait in admission order (vLLM's
// num_requests_waiting). KV cache: each running request holds
// ceil((prompt + max_tokens) / block_tokens) blocks out of kv_blocks.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace gpuorch::emulator {

struct Params {
  double prefill_tokens_per_s = 5000;
  double decode_ms_per_token = 20;
  double batch_knee = 8;
  int max_num_seqs = 16;
  int64_t kv_blocks = 4096;
  int block_tokens = 16;
  double load_s = 0;  // /health answers 503 until this long after start
};

// Seconds a request takes once admitted, `running` sequences in the batch (itself included).
double ServiceSeconds(const Params& p, int64_t prompt_tokens, int64_t max_tokens, int running);

// KV blocks a request holds while it runs.
int64_t KvBlocks(const Params& p, int64_t prompt_tokens, int64_t max_tokens);

// Prompt tokens of a prompt given as text: about four characters a token, at least one.
int64_t TokensOfText(const std::string& text);

// vLLM's e2e latency buckets (vllm/engine/metrics.py), in seconds.
const std::vector<double>& LatencyBuckets();

// What /metrics shows, copied out under the lock.
struct Snapshot {
  int running = 0;
  int waiting = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks = 0;
  int64_t success = 0;
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  std::vector<int64_t> latency_counts;  // per bucket, not cumulative; one more for +Inf
  double latency_sum = 0;
};

// The Prometheus text exposition of `s` (vLLM's names, label model_name).
std::string RenderMetrics(const Snapshot& s, const std::string& model_name);

// Admission and accounting. Thread-safe: every member may be called from any thread.
class Engine {
 public:
  explicit Engine(Params p) : params_(p) {}

  // Blocks while max_num_seqs requests run (counted as waiting), then admits the request and
  // returns its service time in seconds. Every Admit must be followed by one Finish.
  double Admit(int64_t prompt_tokens, int64_t max_tokens);
  // Releases the request's batch slot and KV blocks and records its end-to-end latency.
  void Finish(int64_t prompt_tokens, int64_t max_tokens, double e2e_seconds);

  Snapshot Read() const;
  const Params& params() const { return params_; }

 private:
  const Params params_;
  mutable std::mutex mu_;
  std::condition_variable slot_free_;
  Snapshot s_;
  uint64_t next_ticket_ = 0;  // admission order: FIFO among waiters
  uint64_t serving_ticket_ = 0;
};

}  // namespace gpuorch::emulator
