#include "emulator_core.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace gpuorch::emulator {

double ServiceSeconds(const Params& p, int64_t prompt_tokens, int64_t max_tokens, int running) {
  const double prefill =
      p.prefill_tokens_per_s > 0 ? static_cast<double>(prompt_tokens) / p.prefill_tokens_per_s : 0;
  const double knee = p.batch_knee > 0 ? p.batch_knee : 1;
  const double slowdown = 1 + static_cast<double>(std::max(running, 1) - 1) / knee;
  return prefill + static_cast<double>(max_tokens) * p.decode_ms_per_token * slowdown / 1000;
}

int64_t KvBlocks(const Params& p, int64_t prompt_tokens, int64_t max_tokens) {
  const int64_t per = std::max(p.block_tokens, 1);
  return (prompt_tokens + max_tokens + per - 1) / per;
}

int64_t TokensOfText(const std::string& text) {
  return std::max<int64_t>(1, static_cast<int64_t>((text.size() + 3) / 4));
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> kBuckets = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                               5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                               60.0, 120., 240., 480.0, 960.0, 1920., 7680.};
  return kBuckets;
}

double Engine::Admit(int64_t prompt_tokens, int64_t max_tokens) {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  ++s_.waiting;
  slot_free_.wait(lock, [&] {
    return ticket == serving_ticket_ && s_.running < std::max(params_.max_num_seqs, 1);
  });
  --s_.waiting;
  ++serving_ticket_;
  ++s_.running;
  s_.kv_blocks_used += KvBlocks(params_, prompt_tokens, max_tokens);
  const double seconds = ServiceSeconds(params_, prompt_tokens, max_tokens, s_.running);
  lock.unlock();
  // The next waiter may fit too.
  slot_free_.notify_all();
  return seconds;
}

void Engine::Finish(int64_t prompt_tokens, int64_t max_tokens, double e2e_seconds) {
  {
    std::lock_guard lock(mu_);
    --s_.running;
    s_.kv_blocks_used -= KvBlocks(params_, prompt_tokens, max_tokens);
    ++s_.success;
    s_.prompt_tokens += prompt_tokens;
    s_.generation_tokens += max_tokens;
    const auto& b = LatencyBuckets();
    if (s_.latency_counts.empty()) s_.latency_counts.assign(b.size() + 1, 0);
    const size_t i = std::lower_bound(b.begin(), b.end(), e2e_seconds) - b.begin();
    ++s_.latency_counts[i];
    s_.latency_sum += e2e_seconds;
  }
  slot_free_.notify_all();
}

Snapshot Engine::Read() const {
  std::lock_guard lock(mu_);
  Snapshot s = s_;
  s.kv_blocks = params_.kv_blocks;
  if (s.latency_counts.empty()) s.latency_counts.assign(LatencyBuckets().size() + 1, 0);
  return s;
}

namespace {
std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}
}  // namespace

std::string RenderMetrics(const Snapshot& s, const std::string& model_name) {
  const std::string l = "{model_name=\"" + model_name + "\"}";
  const std::string lb = "{model_name=\"" + model_name + "\",";
  std::ostringstream o;
  auto gauge = [&](const char* name, const char* help, const std::string& v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " gauge\n"
      << name << l << ' ' << v << '\n';
  };
  gauge("vllm:num_requests_running", "Number of requests currently running (emulated).",
        std::to_string(s.running));
  gauge("vllm:num_requests_waiting", "Number of requests waiting for a batch slot (emulated).",
        std::to_string(s.waiting));
  const double usage =
      s.kv_blocks > 0
          ? std::min(1.0, static_cast<double>(s.kv_blocks_used) / static_cast<double>(s.kv_blocks))
          : 0.0;
  gauge("vllm:gpu_cache_usage_perc", "KV-cache usage, 1 means 100 percent (emulated).", Num(usage));
  o << "# HELP vllm:request_success_total Finished requests (emulated).\n"
    << "# TYPE vllm:request_success_total counter\n"
    << "vllm:request_success_total" << lb << "finished_reason=\"length\"} " << s.success << '\n';
  o << "# HELP vllm:prompt_tokens_total Prefilled tokens (emulated).\n"
    << "# TYPE vllm:prompt_tokens_total counter\n"
    << "vllm:prompt_tokens_total" << l << ' ' << s.prompt_tokens << '\n';
  o << "# HELP vllm:generation_tokens_total Generated tokens (emulated).\n"
    << "# TYPE vllm:generation_tokens_total counter\n"
    << "vllm:generation_tokens_total" << l << ' ' << s.generation_tokens << '\n';
  o << "# HELP vllm:e2e_request_latency_seconds End-to-end request latency (emulated).\n"
    << "# TYPE vllm:e2e_request_latency_seconds histogram\n";
  const auto& b = LatencyBuckets();
  int64_t cumulative = 0;
  for (size_t i = 0; i <= b.size(); ++i) {
    cumulative += i < s.latency_counts.size() ? s.latency_counts[i] : 0;
    o << "vllm:e2e_request_latency_seconds_bucket" << lb << "le=\""
      << (i < b.size() ? Num(b[i]) : "+Inf") << "\"} " << cumulative << '\n';
  }
  o << "vllm:e2e_request_latency_seconds_sum" << l << ' ' << Num(s.latency_sum) << '\n'
    << "vllm:e2e_request_latency_seconds_count" << l << ' ' << cumulative << '\n';
  return o.str();
}

}  // namespace gpuorch::emulator
