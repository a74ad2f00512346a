#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace gpuorch::core {

enum class StatusCode { kOk, kInvalidArgument, kNotFound, kAlreadyExists, kFailedPrecondition };

// The outcome of an operation that can fail. Scheduling outcomes (a workload that does not
// fit) are not errors: they are reason codes in the plan. Status is for bad input.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Precondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design.
  Result(Status status) : status_(std::move(status)) {
    assert(!status_.ok() && "Result built from an OK status needs a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace gpuorch::core

// Invariant checks. They stay on in test builds (GPUORCH_ASSERTS) and abort with a message,
// because a broken invariant in the engine means a wrong plan, which is worse than a crash.
#if defined(GPUORCH_ASSERTS)
#define GPUORCH_CHECK(cond)                                               \
  do {                                                                    \
    if (!(cond)) ::gpuorch::core::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)
#else
#define GPUORCH_CHECK(cond) \
  do {                      \
  } while (0)
#endif

namespace gpuorch::core {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}  // namespace gpuorch::core
