// Recommends for one user through the application core (app::Recommender), as `twotower
// recommend` and `POST /v1/recommend` do: build/example_recommend MODEL USER_ID [K].
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "twotower/app/recommender.h"
#include "twotower/core/error.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL USER_ID [K]\n", argv[0]);
    return 1;
  }
  try {
    twotower::app::RecommenderOptions options;
    options.model = argv[1];  // its users, items and train files come from the model file
    const std::unique_ptr<twotower::app::Recommender> rec =
        twotower::app::Recommender::Open(options);
    twotower::app::RecommendRequest request;
    request.user.id = argv[2];
    request.k = argc > 3 ? std::atoi(argv[3]) : 10;
    request.exclude_seen = true;  // not what the user rated in train and val
    for (const twotower::app::ScoredItem& item : rec->Recommend(request).items) {
      std::printf("%s\t%.6f\n", item.id.c_str(), item.score);
    }
  } catch (const twotower::Error& e) {  // e.code(): what kind; e.field(): which input
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
