# Shared by scripts/run, scripts/test and scripts/bench: install what is missing (Debian 12,
# idempotent, as root or through sudo) and configure/build a CMake preset.
set -euo pipefail

GPUORCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPUORCH_PACKAGES=(g++ cmake ninja-build libgtest-dev libgmock-dev libbenchmark-dev clang-format
                  libcli11-dev nlohmann-json3-dev libyaml-cpp-dev libsqlite3-dev libcpp-httplib-dev libboost-dev libssl-dev
                  sqlite3 procps chromium musl-tools pkg-config prometheus-cpp-dev libspdlog-dev
                  prometheus clang libclang-rt-14-dev haproxy python3)

gpuorch_install_deps() {
  local missing=()
  for p in "${GPUORCH_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "gpuorch: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# gpuorch_build PRESET [targets...]
gpuorch_build() {
  local preset="$1"; shift
  cd "$GPUORCH_ROOT"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -- "$@"
}
