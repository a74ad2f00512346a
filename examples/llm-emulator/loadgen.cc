// llm-loadgen: replays the Azure LLM inference trace 2023 (conversation) against an
// OpenAI-like completions endpoint, time-compressed, and reports per-request results and a
// summary. docs/inference.md, "The LLM emulator and load generator".
//
// A program beside the emulator rather than a `gpuorch` subcommand: it speaks only the
// model server's API (through HAProxy or straight to a replica), never gpuorch's, so it
// belongs with the emulator, and the gpuorch binary stays about orchestration.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "trace.h"

namespace {

using Clock = std::chrono::steady_clock;
using gpuorch::emulator::RequestResult;
using gpuorch::emulator::TraceRequest;

struct Target {
  std::string scheme_host_port;
  std::string path;  // ends with /v1/completions
};

bool ParseTarget(const std::string& url, Target& t) {
  if (url.rfind("http://", 0) != 0) return false;
  const size_t slash = url.find('/', 7);
  t.scheme_host_port = url.substr(0, slash);
  std::string base = slash == std::string::npos ? "" : url.substr(slash);
  while (!base.empty() && base.back() == '/') base.pop_back();
  t.path = base + "/v1/completions";
  return t.scheme_host_port.size() > 7;
}

RequestResult Send(const Target& t, const TraceRequest& r, int64_t max_tokens_cap, double timeout_s,
                   Clock::time_point run_start) {
  RequestResult out;
  const auto start = Clock::now();
  out.start_s = std::chrono::duration<double>(start - run_start).count();
  httplib::Client client(t.scheme_host_port);
  const auto timeout = std::chrono::duration<double>(timeout_s);
  client.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  const int64_t max_tokens =
      max_tokens_cap > 0 ? std::min(r.generated_tokens, max_tokens_cap) : r.generated_tokens;
  const nlohmann::json body = {{"prompt_tokens", r.context_tokens}, {"max_tokens", max_tokens}};
  auto res = client.Post(t.path, body.dump(), "application/json");
  out.latency_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!res) {
    out.status = -1;
    return out;
  }
  out.status = res->status;
  if (res->has_header("x-emulator-service-ms"))
    out.service_s = std::atof(res->get_header_value("x-emulator-service-ms").c_str()) / 1000;
  return out;
}

bool WriteResults(const std::string& path, const std::vector<RequestResult>& results) {
  std::ofstream out(path);
  if (!out) return false;
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const RequestResult& r : results)
      list.push_back({{"start_s", r.start_s},
                      {"latency_s", r.latency_s},
                      {"status", r.status},
                      {"service_s", r.service_s}});
    out << list.dump(1) << '\n';
  } else {
    out << "start_s,latency_s,status,service_s\n";
    for (const RequestResult& r : results)
      out << r.start_s << ',' << r.latency_s << ',' << r.status << ',' << r.service_s << '\n';
  }
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"llm-loadgen: replays the Azure LLM 2023 conversation trace, time-compressed"};
  std::string trace = "../shared/traces/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
  std::string target = "http://127.0.0.1:8000";
  std::string out_path;
  double speedup = 1, duration_s = 60, skip_s = 0, timeout_s = 120;
  int64_t max_tokens_cap = 0;
  app.add_option("--trace", trace, "Trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)")
      ->capture_default_str();
  app.add_option("--target", target,
                 "Base URL; requests go to <URL>/v1/completions (e.g. http://gw:8080/svc/chat)")
      ->capture_default_str();
  app.add_option("--speedup", speedup, "Trace seconds per real second")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--duration-s", duration_s, "Real seconds of trace to replay")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--skip-s", skip_s, "Trace seconds to skip at its start")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-tokens-cap", max_tokens_cap, "Cap on max_tokens (0: none)")
      ->capture_default_str();
  app.add_option("--timeout-s", timeout_s, "Per-request timeout")->capture_default_str();
  app.add_option("--out", out_path, "Per-request results: .json, else CSV");
  CLI11_PARSE(app, argc, argv);
  Target t;
  if (!ParseTarget(target, t)) {
    std::cerr << "llm-loadgen: --target " << target << ": expected http://HOST:PORT[/path]\n";
    return 2;
  }
  auto parsed = gpuorch::emulator::ReadTrace(trace);
  if (auto* e = std::get_if<std::string>(&parsed)) {
    std::cerr << "llm-loadgen: " << *e << "\n";
    return 1;
  }
  std::vector<TraceRequest> requests;
  for (const TraceRequest& r : std::get<0>(parsed)) {
    if (r.offset_s < skip_s) continue;
    TraceRequest shifted = r;
    shifted.offset_s = (r.offset_s - skip_s) / speedup;
    if (shifted.offset_s >= duration_s) break;
    requests.push_back(shifted);
  }
  std::cerr << "llm-loadgen: " << requests.size() << " requests over " << duration_s << " s to "
            << t.scheme_host_port << t.path << "\n";

  std::vector<RequestResult> results(requests.size());
  std::vector<std::thread> senders;
  senders.reserve(requests.size());
  const auto run_start = Clock::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    std::this_thread::sleep_until(run_start +
                                  std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(requests[i].offset_s)));
    senders.emplace_back(
        [&, i] { results[i] = Send(t, requests[i], max_tokens_cap, timeout_s, run_start); });
  }
  for (std::thread& s : senders) s.join();

  if (!out_path.empty() && !WriteResults(out_path, results)) {
    std::cerr << "llm-loadgen: cannot write " << out_path << "\n";
    return 1;
  }
  const auto s = gpuorch::emulator::Summarize(results);
  std::cout << nlohmann::json{{"count", s.count},
                              {"failures", s.failures},
                              {"p50_s", s.p50_s},
                              {"p99_s", s.p99_s},
                              {"waited_over_1s", s.waited_over_1s}}
                   .dump()
            << "\n";
  return s.failures == 0 ? 0 : 1;
}
