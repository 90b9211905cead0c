#include "twotower/core/rng.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "twotower/core/error.h"

namespace twotower {
namespace {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

Rng::Rng(uint64_t seed) {
  // SplitMix64 expands the seed, as the xoshiro authors recommend; it never yields all zeros.
  uint64_t state = seed;
  for (uint64_t& s : s_) s = SplitMix64(&state);
}

uint64_t Rng::Below(uint64_t n) {
  __uint128_t m = static_cast<__uint128_t>(NextU64()) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = -n % n;
    while (low < threshold) {
      m = static_cast<__uint128_t>(NextU64()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

double Rng::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_normal_;
  }
  double u1 = Uniform();
  while (u1 <= 0.0) u1 = Uniform();
  const double u2 = Uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * M_PI * u2;
  spare_normal_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

double Rng::Logistic() {
  double u = Uniform();
  while (u <= 0.0) u = Uniform();
  return std::log(u / (1.0 - u));
}

std::string Rng::SaveState() const {
  uint64_t spare_bits;
  std::memcpy(&spare_bits, &spare_normal_, sizeof(spare_bits));
  const uint64_t words[6] = {s_[0], s_[1], s_[2], s_[3], spare_bits, has_spare_ ? 1u : 0u};
  std::string out;
  for (int i = 0; i < 6; ++i) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(words[i]));
    if (i > 0) out += ':';
    out += buf;
  }
  return out;
}

void Rng::LoadState(const std::string& state) {
  uint64_t words[6];
  size_t pos = 0;
  for (int i = 0; i < 6; ++i) {
    const size_t end = i < 5 ? state.find(':', pos) : state.size();
    const std::string word = end == std::string::npos ? "" : state.substr(pos, end - pos);
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), words[i], 16);
    if (word.size() != 16 || ec != std::errc() || ptr != word.data() + word.size()) {
      throw Error("random generator state " + Quote(state) +
                  ": expected six 16-digit hex words separated by ':'");
    }
    pos = end + 1;
  }
  if (words[5] > 1 || (words[0] | words[1] | words[2] | words[3]) == 0) {
    throw Error("random generator state " + Quote(state) + ": not a generator state");
  }
  for (int i = 0; i < 4; ++i) s_[i] = words[i];
  std::memcpy(&spare_normal_, &words[4], sizeof(spare_normal_));
  has_spare_ = words[5] == 1;
}

}  // namespace twotower
