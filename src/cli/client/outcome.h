#pragma once

#include <string>
#include <utility>
#include <variant>

namespace gpuorch::cli {

// The process exit codes of the client commands. Scripts branch on them, so they are part
// of the CLI's contract (docs/cli.md): 1 means the server looked at the request and said no,
// 3 means the request never got an answer, 2 means the command line itself was wrong.
enum ExitCode : int {
  kExitOk = 0,
  kExitRefused = 1,
  kExitUsage = 2,
  kExitUnreachable = 3,
};

// Why a client step failed: the exit code it maps to and a one-line message for stderr
// (without the "error: " prefix, which the command adds when it prints).
struct Failure {
  int exit_code = kExitRefused;
  std::string message;
};

struct Done {};

// A value or the Failure that explains why there is none. core::Status has no room for an
// exit code, and the client's failures are about the process outcome, hence its own type.
template <typename T>
class [[nodiscard]] Outcome {
 public:
  Outcome(T value) : v_(std::move(value)) {}            // NOLINT: implicit by design.
  Outcome(Failure failure) : v_(std::move(failure)) {}  // NOLINT: implicit by design.

  bool ok() const { return v_.index() == 0; }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Failure& failure() const { return std::get<1>(v_); }

 private:
  std::variant<T, Failure> v_;
};

inline Failure UsageError(std::string message) { return {kExitUsage, std::move(message)}; }

}  // namespace gpuorch::cli
