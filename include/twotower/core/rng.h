// Rng: a small, fast, seedable random number generator (xoshiro256**, Blackman & Vigna 2018)
// with its own distributions.
//
// Why not <random>: std::normal_distribution and friends are implementation-defined, so the same
// seed would give other data on another standard library; here the same seed gives the same bytes
// everywhere. Not thread-safe: give each thread its own Rng (see Split()).
#ifndef TWOTOWER_CORE_RNG_H_
#define TWOTOWER_CORE_RNG_H_

#include <cstdint>

namespace twotower {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  uint64_t NextU64();
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

 private:
  uint64_t s_[4];
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_RNG_H_
