// Content fingerprints and checksums: SHA-256 (FIPS 180-4) from OpenSSL's libcrypto (Debian's
// libssl-dev), and CRC-32C.
//
// A model's fingerprint is the SHA-256 of its file's bytes, as `sha256sum model.safetensors`
// prints it: every file derived from a model (item embeddings, indexes, recommendations) records
// it, and reading one with another model is refused (app.h). Thread-safe: no shared state.
#ifndef TWOTOWER_CORE_HASH_H_
#define TWOTOWER_CORE_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace twotower {

// The SHA-256 of `bytes` as 64 lowercase hex digits: Sha256Hex("abc") ==
// "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad". Throws Error if libcrypto
// fails (out of memory).
std::string Sha256Hex(std::string_view bytes);

// The SHA-256 of a file's bytes, read in 1 MiB pieces (a large file is not held whole). Throws
// Error naming the file when it cannot be read.
std::string Sha256FileHex(const std::string& path);

// True for 64 lowercase hex digits (what Sha256Hex returns).
bool IsSha256Hex(std::string_view text);

// CRC-32C (Castagnoli; RFC 3720 B.4), continuing from `crc` (0 to start):
// Crc32c(0, "123456789", 9) == 0xE3069283. Uses the SSE4.2 instruction when compiled for it.
// The checksum of index files (index/index_file.h) and of the floats an ids file describes (app.h).
uint32_t Crc32c(uint32_t crc, const void* data, size_t size);

// The first 12 hex digits, for messages ("sha256:3a7bd3e2360a"); the whole value when shorter.
std::string ShortFingerprint(std::string_view sha256_hex);

}  // namespace twotower

#endif  // TWOTOWER_CORE_HASH_H_
