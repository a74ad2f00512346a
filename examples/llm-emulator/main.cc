// llm-emulator: an emulated LLM inference server (no model, no weights) speaking a small part
// of vLLM's OpenAI-compatible API. docs/inference.md, "The LLM emulator and load generator".
//   POST /v1/completions  {"prompt": "..." | "prompt_tokens": N, "max_tokens": M}
//   GET  /health          503 until --load-s seconds after start, then 200
//   GET  /metrics         vLLM's metric names (emulator_core.h)
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "emulator_core.h"

namespace {

using Clock = std::chrono::steady_clock;
using gpuorch::emulator::Engine;

httplib::Server* g_server = nullptr;
void OnSignal(int) {
  if (g_server != nullptr) g_server->stop();
}

void Completions(Engine& engine, const std::string& model, std::atomic<uint64_t>& ids,
                 const httplib::Request& req, httplib::Response& res) {
  const auto start = Clock::now();
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  auto bad = [&](const std::string& message) {
    res.status = 400;
    res.set_content(
        nlohmann::json{{"error", {{"message", message}, {"type", "invalid_request"}}}}.dump(),
        "application/json");
  };
  if (!body.is_object()) return bad("the body must be a JSON object");
  int64_t prompt_tokens = 0;
  if (body.contains("prompt_tokens")) {
    if (!body["prompt_tokens"].is_number_integer() || body["prompt_tokens"].get<int64_t>() < 0)
      return bad("prompt_tokens: must be a non-negative integer");
    prompt_tokens = body["prompt_tokens"].get<int64_t>();
  } else if (body.contains("prompt")) {
    if (!body["prompt"].is_string()) return bad("prompt: must be a string");
    prompt_tokens = gpuorch::emulator::TokensOfText(body["prompt"].get<std::string>());
  } else {
    return bad("prompt or prompt_tokens is required");
  }
  const nlohmann::json mt = body.value("max_tokens", nlohmann::json(16));
  if (!mt.is_number_integer() || mt.get<int64_t>() < 0 || mt.get<int64_t>() > 1'000'000)
    return bad("max_tokens: must be an integer in [0, 1000000]");
  const int64_t max_tokens = mt.get<int64_t>();

  const double seconds = engine.Admit(prompt_tokens, max_tokens);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double e2e = std::chrono::duration<double>(Clock::now() - start).count();
  engine.Finish(prompt_tokens, max_tokens, e2e);

  std::string text;
  for (int64_t i = 0; i < std::min<int64_t>(max_tokens, 32); ++i) text += " tok";
  const nlohmann::json answer = {
      {"id", "cmpl-emu-" + std::to_string(ids++)},
      {"object", "text_completion"},
      {"model", model},
      {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", "length"}}}},
      {"usage",
       {{"prompt_tokens", prompt_tokens},
        {"completion_tokens", max_tokens},
        {"total_tokens", prompt_tokens + max_tokens}}}};
  // How long the request computed once admitted, so that a load generator can tell waiting
  // (in a gateway's queue or for a batch slot here) from service.
  res.set_header("x-emulator-service-ms", std::to_string(static_cast<int64_t>(seconds * 1000)));
  res.set_content(answer.dump(), "application/json");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"llm-emulator: an emulated LLM server (no model) with vLLM's metric names"};
  gpuorch::emulator::Params p;
  int port = 0;
  std::string host = "127.0.0.1";
  std::string model = "llm-emulator";
  int threads = 512;
  app.add_option("--port", port, "Port to listen on (default: env PORT, else 8000)");
  app.add_option("--host", host, "Address to listen on")->capture_default_str();
  app.add_option("--model", model, "Model name reported in answers and metrics")
      ->capture_default_str();
  app.add_option("--prefill-tokens-per-s", p.prefill_tokens_per_s, "Prefill speed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--decode-ms-per-token", p.decode_ms_per_token,
                 "Decode time per output token for a lone request")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch-knee", p.batch_knee,
                 "Each this many more running sequences add one more per-token time")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-num-seqs", p.max_num_seqs, "Requests running at once; others wait")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--kv-blocks", p.kv_blocks, "KV-cache blocks (gpu_cache_usage_perc)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--block-tokens", p.block_tokens, "Tokens per KV-cache block")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--load-s", p.load_s, "Seconds of emulated model loading (/health 503)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "HTTP worker threads (a running request holds one)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (port == 0) {
    const char* env = std::getenv("PORT");
    port = env != nullptr ? std::atoi(env) : 8000;
    if (port <= 0 || port > 65535) {
      std::cerr << "llm-emulator: env PORT='" << (env ? env : "") << "' is not a port\n";
      return 2;
    }
  }

  Engine engine(p);
  std::atomic<uint64_t> ids{0};
  const auto started = Clock::now();
  httplib::Server server;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    Completions(engine, model, ids, req, res);
  });
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    const double up = std::chrono::duration<double>(Clock::now() - started).count();
    if (up < p.load_s) {
      res.status = 503;
      res.set_content("loading\n", "text/plain");
    } else {
      res.set_content("ok\n", "text/plain");
    }
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(gpuorch::emulator::RenderMetrics(engine.Read(), model),
                    "text/plain; version=0.0.4");
  });
  g_server = &server;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  if (!server.bind_to_port(host, port)) {
    std::cerr << "llm-emulator: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::cerr << "llm-emulator: listening on " << host << ":" << port << " (load " << p.load_s
            << " s)\n";
  server.listen_after_bind();
  return 0;
}
