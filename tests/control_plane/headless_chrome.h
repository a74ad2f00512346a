#pragma once

// Headless Chromium driven through the DevTools protocol over a pipe (Chromium's
// --remote-debugging-pipe: JSON messages separated by NUL bytes on file descriptors 3 and 4,
// what Puppeteer's `pipe: true` uses). No port, no WebSocket: the browser is a child of the
// test and its protocol is two pipes, so nothing else on the machine can reach it.
//
// It records what a page does wrong while it runs: uncaught exceptions, console.error,
// error entries of the browser's log (CSP violations, resources that failed to load), and
// requests that failed or were answered with a status of 400 or more.
//
// Thread-compatible: one thread uses a HeadlessChrome.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gpuorch::cptest {

class HeadlessChrome {
 public:
  using Json = nlohmann::json;

  // Starts `binary` (e.g. /usr/bin/chromium) with a new profile under `dir` (its stderr in
  // dir/chromium.log) and opens a page of `width` x `height` CSS pixels. Null, with `error`
  // set, when the browser does not start or answer within a minute.
  static std::unique_ptr<HeadlessChrome> Start(const std::string& binary, const std::string& dir,
                                               int width, int height, std::string& error);
  // Closes the browser and kills its process group.
  ~HeadlessChrome();
  HeadlessChrome(const HeadlessChrome&) = delete;
  HeadlessChrome& operator=(const HeadlessChrome&) = delete;

  // Sends a command to the page and waits for its answer: the result, or an object with
  // "error" (the protocol's, or {"message": "timeout"}).
  Json Call(const std::string& method, const Json& params = Json::object(),
            std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Evaluates `expression` in the page (awaiting a promise) and returns its value; null on
  // an exception (which is recorded as a problem).
  Json Eval(const std::string& expression);
  // Polls `expression` until it is true (every 100 ms, reading the browser's events
  // meanwhile) or `deadline` passes; an exception counts as false.
  bool WaitUntil(const std::string& expression, std::chrono::milliseconds deadline);
  // Navigates the page (a new document, or the same one for a change of the fragment).
  bool Navigate(const std::string& url);
  // Saves a PNG of the whole page (up to 4000 px tall) at `path`.
  bool Screenshot(const std::string& path);

  // What went wrong in the page so far, one line each, oldest first.
  const std::vector<std::string>& problems() const { return problems_; }
  void ClearProblems() { problems_.clear(); }

 private:
  HeadlessChrome() = default;
  // Reads messages until `done` holds or `deadline` passes; true if `done` held.
  bool Pump(const std::function<bool()>& done, std::chrono::steady_clock::time_point deadline);
  void OnEvent(const Json& message);
  // Sends on the browser's session ("" ) or the page's.
  int Send(const std::string& method, const Json& params, const std::string& session);
  Json Await(int id, std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;  // our ends of the pipes
  std::string buffer_;       // bytes read and not yet a whole message
  int next_id_ = 1;
  std::string session_;  // the page's session id
  std::vector<Json> answers_;
  std::vector<std::string> problems_;
  std::map<std::string, std::string> urls_;  // request id -> URL, for failures
  int width_ = 0, height_ = 0;
};

// Decodes standard base64 (the protocol's screenshots); invalid characters are skipped.
std::string Base64Decode(const std::string& in);

}  // namespace gpuorch::cptest
