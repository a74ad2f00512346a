#include "headless_chrome.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

namespace gpuorch::cptest {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string Base64Decode(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t bits = 0;
  int count = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) continue;  // padding, line breaks
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

std::unique_ptr<HeadlessChrome> HeadlessChrome::Start(const std::string& binary,
                                                      const std::string& dir, int width, int height,
                                                      std::string& error) {
  // A write to a browser that died is an error to report, not a signal that ends the test.
  signal(SIGPIPE, SIG_IGN);
  int to_chrome[2], from_chrome[2];
  if (pipe2(to_chrome, O_CLOEXEC) != 0 || pipe2(from_chrome, O_CLOEXEC) != 0) {
    error = "pipe failed";
    return nullptr;
  }
  const std::vector<std::string> args = {
      binary,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--remote-debugging-pipe",
      "--user-data-dir=" + dir + "/profile",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-extensions",
      "--disable-dev-shm-usage",
      "--hide-scrollbars",
      "--mute-audio",
      "--window-size=" + std::to_string(width) + "," + std::to_string(height),
      "about:blank"};
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string log = dir + "/chromium.log";
  std::unique_ptr<HeadlessChrome> c(new HeadlessChrome());
  c->width_ = width;
  c->height_ = height;
  c->pid_ = fork();
  if (c->pid_ == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The protocol's descriptors: the browser reads 3 and writes 4. Moved above 10 first so
    // that neither dup2 overwrites the other's source.
    const int in = fcntl(to_chrome[0], F_DUPFD, 10), out = fcntl(from_chrome[1], F_DUPFD, 10);
    dup2(in, 3);
    dup2(out, 4);
    const int null = open("/dev/null", O_RDONLY);
    const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null >= 0) dup2(null, 0);
    if (err >= 0) {
      dup2(err, 1);
      dup2(err, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(to_chrome[0]);
  close(from_chrome[1]);
  c->to_ = to_chrome[1];
  c->from_ = from_chrome[0];
  if (c->pid_ < 0) {
    error = "fork failed";
    return nullptr;
  }
  setpgid(c->pid_, c->pid_);
  // A page of our own, and a session attached to it (flat: its messages carry sessionId).
  const int create = c->Send("Target.createTarget", {{"url", "about:blank"}}, "");
  Json created = c->Await(create, std::chrono::seconds(60));
  if (!created.contains("targetId")) {
    error = "Target.createTarget: " + created.dump() + " (see " + log + ")";
    return nullptr;
  }
  const int attach =
      c->Send("Target.attachToTarget", {{"targetId", created["targetId"]}, {"flatten", true}}, "");
  Json attached = c->Await(attach, std::chrono::seconds(60));
  if (!attached.contains("sessionId")) {
    error = "Target.attachToTarget: " + attached.dump();
    return nullptr;
  }
  c->session_ = attached["sessionId"].get<std::string>();
  for (const char* domain : {"Runtime.enable", "Log.enable", "Network.enable", "Page.enable"}) {
    Json r = c->Call(domain);
    if (r.contains("error")) {
      error = std::string(domain) + ": " + r.dump();
      return nullptr;
    }
  }
  c->Call("Emulation.setDeviceMetricsOverride",
          {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}});
  return c;
}

HeadlessChrome::~HeadlessChrome() {
  if (pid_ > 0) {
    if (to_ >= 0) Send("Browser.close", Json::object(), "");
    const auto end = Clock::now() + std::chrono::seconds(5);
    int status = 0;
    pid_t reaped = 0;
    while ((reaped = waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(-pid_, SIGKILL);  // the renderers and helpers too
    if (reaped == 0) waitpid(pid_, &status, 0);
  }
  if (to_ >= 0) close(to_);
  if (from_ >= 0) close(from_);
}

int HeadlessChrome::Send(const std::string& method, const Json& params,
                         const std::string& session) {
  const int id = next_id_++;
  Json m = {{"id", id}, {"method", method}, {"params", params}};
  if (!session.empty()) m["sessionId"] = session;
  std::string text = m.dump();
  text.push_back('\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(to_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return id;
}

bool HeadlessChrome::Pump(const std::function<bool()>& done, Clock::time_point deadline) {
  char chunk[65536];
  while (!done()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{from_, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = read(from_, chunk, sizeof chunk);
    if (n <= 0) return done();  // the browser is gone
    buffer_.append(chunk, static_cast<size_t>(n));
    size_t end;
    while ((end = buffer_.find('\0')) != std::string::npos) {
      Json m = Json::parse(buffer_.substr(0, end), nullptr, false);
      buffer_.erase(0, end + 1);
      if (m.is_discarded()) continue;
      if (m.contains("id")) {
        answers_.push_back(std::move(m));
      } else {
        OnEvent(m);
      }
    }
  }
  return true;
}

Json HeadlessChrome::Await(int id, std::chrono::milliseconds timeout) {
  Json found;
  auto take = [&] {
    for (size_t i = 0; i < answers_.size(); ++i) {
      if (answers_[i].value("id", -1) == id) {
        found = std::move(answers_[i]);
        answers_.erase(answers_.begin() + static_cast<std::ptrdiff_t>(i));
        return true;
      }
    }
    return false;
  };
  if (!Pump(take, Clock::now() + timeout)) return Json{{"error", {{"message", "timeout"}}}};
  if (found.contains("error")) return Json{{"error", found["error"]}};
  return found.value("result", Json::object());
}

Json HeadlessChrome::Call(const std::string& method, const Json& params,
                          std::chrono::milliseconds timeout) {
  return Await(Send(method, params, session_), timeout);
}

void HeadlessChrome::OnEvent(const Json& m) {
  const std::string method = m.value("method", "");
  const Json params = m.value("params", Json::object());
  if (method == "Runtime.exceptionThrown") {
    const Json d = params.value("exceptionDetails", Json::object());
    std::string what = d.value("text", "");
    if (d.contains("exception")) what += " " + d["exception"].value("description", "");
    problems_.push_back("exception: " + what + " at " + d.value("url", "") + ":" +
                        std::to_string(d.value("lineNumber", 0)));
  } else if (method == "Runtime.consoleAPICalled") {
    const std::string type = params.value("type", "");
    if (type != "error" && type != "assert") return;
    std::string text;
    for (const Json& a : params.value("args", Json::array())) {
      text += " " + (a.contains("value") ? a["value"].dump() : a.value("description", ""));
    }
    problems_.push_back("console." + type + ":" + text);
  } else if (method == "Log.entryAdded") {
    const Json e = params.value("entry", Json::object());
    if (e.value("level", "") != "error") return;
    problems_.push_back("log: " + e.value("text", "") + " (" + e.value("url", "") + ")");
  } else if (method == "Network.responseReceived") {
    const Json r = params.value("response", Json::object());
    if (r.value("status", 0) >= 400) {
      problems_.push_back("HTTP " + std::to_string(r.value("status", 0)) + " " +
                          r.value("url", ""));
    }
  } else if (method == "Network.requestWillBeSent") {
    urls_[params.value("requestId", "")] = params["request"].value("url", "");
  } else if (method == "Network.loadingFailed") {
    // Canceled ones too: Chrome cancels what it refuses to use (a stylesheet served with
    // another type), and the page never navigates away while a test watches it.
    problems_.push_back("request failed: " + params.value("errorText", "") + " " +
                        params.value("blockedReason", "") + " (" + params.value("type", "") + " " +
                        urls_[params.value("requestId", "")] + ")");
  }
}

Json HeadlessChrome::Eval(const std::string& expression) {
  Json r = Call("Runtime.evaluate",
                {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
  if (r.contains("exceptionDetails")) {
    problems_.push_back("evaluate(" + expression + "): " + r["exceptionDetails"].dump());
    return nullptr;
  }
  if (r.contains("error")) return nullptr;
  return r.contains("result") ? r["result"].value("value", Json()) : Json();
}

bool HeadlessChrome::WaitUntil(const std::string& expression, std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  while (true) {
    // A page still loading (no body yet) is not there yet, not a problem of the page.
    const Json v =
        Eval("(() => { try { return !!(" + expression + "); } catch (e) { return false; } })()");
    if (v.is_boolean() && v.get<bool>()) return true;
    if (Clock::now() >= end) return false;
    // Read the browser's events while waiting, instead of sleeping blind.
    Pump([] { return false; }, std::min(end, Clock::now() + std::chrono::milliseconds(100)));
  }
}

bool HeadlessChrome::Navigate(const std::string& url) {
  Json r = Call("Page.navigate", {{"url", url}});
  return !r.contains("error") && !r.contains("errorText");
}

bool HeadlessChrome::Screenshot(const std::string& path) {
  // The whole page: the viewport stretched to the content's height for the capture.
  Json metrics = Call("Page.getLayoutMetrics");
  int height = height_;
  if (metrics.contains("cssContentSize")) {
    height = std::max(height_, static_cast<int>(metrics["cssContentSize"].value("height", 0.0)));
  }
  height = std::min(height, 4000);
  Call("Emulation.setDeviceMetricsOverride",
       {{"width", width_}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}});
  Json shot = Call("Page.captureScreenshot", {{"format", "png"}});
  Call("Emulation.setDeviceMetricsOverride",
       {{"width", width_}, {"height", height_}, {"deviceScaleFactor", 1}, {"mobile", false}});
  if (!shot.contains("data")) return false;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << Base64Decode(shot["data"].get<std::string>());
  return static_cast<bool>(out);
}

}  // namespace gpuorch::cptest
