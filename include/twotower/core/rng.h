// Rng: a small, fast, seedable random number generator (xoshiro256**, Blackman & Vigna 2018)
// with its own distributions.
//
// Why not <random>: std::normal_distribution and friends are implementation-defined, so the same
// seed would give other data on another standard library; here the same seed gives the same bytes
// everywhere. Not thread-safe: give each thread its own Rng (see Split()).
#ifndef TWOTOWER_CORE_RNG_H_
#define TWOTOWER_CORE_RNG_H_

#include <cstdint>
#include <string>

namespace twotower {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // Inline: dropout masks draw one value per four activations in the training step's hot loop.
  uint64_t NextU64() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 bits (float) or 53 bits (double).
  float UniformFloat() { return static_cast<float>(NextU64() >> 40) * 0x1.0p-24f; }
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire 2019).
  uint64_t Below(uint64_t n);
  // Standard normal (Box-Muller).
  double Normal();
  // Standard logistic: log(u / (1 - u)).
  double Logistic();
  // An independent generator derived from this one's stream.
  Rng Split() { return Rng(NextU64()); }

  // The whole state as text ("s0:s1:s2:s3:spare:has_spare", 16-digit hex words; spare as its
  // IEEE-754 bits), for training checkpoints: LoadState(SaveState()) continues the same stream.
  std::string SaveState() const;
  // Throws Error naming the text when it is not what SaveState writes.
  void LoadState(const std::string& state);

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_RNG_H_
