#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

// API tokens (docs/security.md): "gpo_<accessor>.<secret>", Nomad's model. The accessor
// (16 lowercase hex digits, 64 random bits) names the token in lists, the audit log and
// revocations; the secret (64 lowercase hex digits, 256 bits from OpenSSL's RAND_bytes) is
// shown once, when the token is created, and only its SHA-256 is stored.
//
// Everything here is a pure function of its input except GenerateToken (randomness), so
// the parser can be fuzzed on its own. Error messages never repeat the secret.
namespace gpuorch::server {

inline constexpr std::string_view kTokenPrefix = "gpo_";
inline constexpr size_t kAccessorLength = 16;
inline constexpr size_t kSecretLength = 64;
inline constexpr size_t kTokenLength = kTokenPrefix.size() + kAccessorLength + 1 + kSecretLength;

struct TokenParts {
  std::string accessor;
  std::string secret;
};

// Parses a token as printed by `gpuorch token create`. Surrounding whitespace (a trailing
// newline of a token file) is ignored; anything else out of place is an error.
core::Result<TokenParts> ParseToken(std::string_view text);
// Parses an Authorization header value, "Bearer <token>" (the scheme case-insensitively).
core::Result<TokenParts> ParseBearer(std::string_view header);
std::string FormatToken(const TokenParts& parts);
// A new token from OpenSSL's CSPRNG; an error only when the generator fails.
core::Result<TokenParts> GenerateToken();
// SHA-256 of the secret, 64 lowercase hex digits: what the store keeps.
std::string HashSecret(std::string_view secret);
// Whether `secret` hashes to `stored_hash`, compared in constant time (CRYPTO_memcmp) so
// that the time taken says nothing about how much of the hash matched.
bool SecretMatches(std::string_view secret, std::string_view stored_hash);
// Whether `s` is an accessor: kAccessorLength lowercase hex digits.
bool IsAccessor(std::string_view s);

}  // namespace gpuorch::server
