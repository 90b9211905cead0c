// Loads a trained model file and scores one raw user against two raw movies: the model file
// alone (weights + fitted encoder) is enough. Usage: example_score MODEL.safetensors
#include <cmath>
#include <cstdio>

#include "twotower/core/error.h"
#include "twotower/model/model_file.h"

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: %s MODEL.safetensors\n", argv[0]), 2;
  try {
    const twotower::model::LoadedModel m = twotower::model::LoadModel(argv[1]);
    twotower::Matrix user(1, m.encoder.user.width()), items(2, m.encoder.item.width()), u, v;
    m.encoder.user.EncodeRow(
        {{"age", "25"}, {"gender", "F"}, {"favorite_genre", "Sci-Fi"}, {"activity_level", "high"}},
        "user", user.data());
    m.encoder.item.EncodeRow(
        {{"genre", "Sci-Fi"}, {"year", "2015"}, {"duration", "120"}, {"avg_rating", "4.2"}},
        "movie 1", items.row(0).data());
    m.encoder.item.EncodeRow(
        {{"genre", "Horror"}, {"year", "1975"}, {"duration", "95"}, {"avg_rating", "2.8"}},
        "movie 2", items.row(1).data());
    m.model->EncodeUsers(user, &u);
    m.model->EncodeItems(items, &v);
    for (int i = 0; i < 2; ++i) {
      const float logit = m.model->scale() * u.row(0).dot(v.row(i)) + m.model->bias();
      std::printf("movie %d: p(like) = %.3f\n", i + 1, 1.0 / (1.0 + std::exp(-logit)));
    }
  } catch (const twotower::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
