#include "server/token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace gpuorch::server {
namespace {

using core::Result;
using core::Status;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xF];
  }
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool IsAccessor(std::string_view s) { return s.size() == kAccessorLength && IsLowerHex(s); }

Result<TokenParts> ParseToken(std::string_view text) {
  text = Trim(text);
  if (text.empty()) return Status::Invalid("token: empty");
  if (text.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return Status::Invalid("token: not a gpuorch token (they start with gpo_)");
  }
  if (text.size() != kTokenLength) {
    return Status::Invalid("token: wrong length " + std::to_string(text.size()) + " (expected " +
                           std::to_string(kTokenLength) + ")");
  }
  text.remove_prefix(kTokenPrefix.size());
  const std::string_view accessor = text.substr(0, kAccessorLength);
  if (!IsAccessor(accessor)) return Status::Invalid("token: accessor is not lowercase hex");
  if (text[kAccessorLength] != '.') return Status::Invalid("token: no '.' after the accessor");
  const std::string_view secret = text.substr(kAccessorLength + 1);
  if (!IsLowerHex(secret)) return Status::Invalid("token: secret is not lowercase hex");
  return TokenParts{std::string(accessor), std::string(secret)};
}

Result<TokenParts> ParseBearer(std::string_view header) {
  header = Trim(header);
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size() || !IsSpace(header[kScheme.size()])) {
    return Status::Invalid("authorization: expected 'Bearer <token>'");
  }
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = header[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return Status::Invalid("authorization: expected 'Bearer <token>'");
  }
  return ParseToken(header.substr(kScheme.size()));
}

std::string FormatToken(const TokenParts& parts) {
  return std::string(kTokenPrefix) + parts.accessor + "." + parts.secret;
}

Result<TokenParts> GenerateToken() {
  unsigned char accessor[kAccessorLength / 2];
  unsigned char secret[kSecretLength / 2];
  if (RAND_bytes(accessor, sizeof accessor) != 1 || RAND_bytes(secret, sizeof secret) != 1) {
    return Status::Precondition("token: the random generator failed (RAND_bytes)");
  }
  TokenParts t{Hex(accessor, sizeof accessor), Hex(secret, sizeof secret)};
  OPENSSL_cleanse(secret, sizeof secret);
  return t;
}

std::string HashSecret(std::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return Hex(digest, sizeof digest);
}

bool SecretMatches(std::string_view secret, std::string_view stored_hash) {
  const std::string h = HashSecret(secret);
  // Both are 64 hex digits when the store is intact; the length says nothing secret.
  if (stored_hash.size() != h.size()) return false;
  return CRYPTO_memcmp(h.data(), stored_hash.data(), h.size()) == 0;
}

}  // namespace gpuorch::server
