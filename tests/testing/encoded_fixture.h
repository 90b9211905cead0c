// A small encoded data set with every kind of learned feature: users (id embedding of dim 3 +
// numeric age; 3 rows) and movies (id embedding of dim 4 + multi-hot genres of dim 2; 4 rows),
// the encoder fitted on all of them. Shared by the tower and ranker tests.
#ifndef TWOTOWER_TESTS_TESTING_ENCODED_FIXTURE_H_
#define TWOTOWER_TESTS_TESTING_ENCODED_FIXTURE_H_

#include "testing/fixtures.h"
#include "twotower/data/csv.h"
#include "twotower/data/encoder.h"
#include "twotower/data/schema.h"

namespace twotower::testing {

struct EncodedFixture {
  data::FeatureSchema schema;
  data::FeatureEncoder encoder;
  data::Table users, items;
  data::EncodedTable xu, xi;

  EncodedFixture() {
    schema.user.id_column = "user_id";
    data::FeatureSpec uid{"user_id", data::FeatureType::kId};
    uid.dim = 3;
    schema.user.features = {uid, {"age", data::FeatureType::kNumeric}};
    schema.item.id_column = "movie_id";
    data::FeatureSpec mid{"movie_id", data::FeatureType::kId};
    mid.dim = 4;
    data::FeatureSpec genres{"genres", data::FeatureType::kMultiHot};
    genres.dim = 2;
    schema.item.features = {mid, genres};
    users = MakeTable("users.csv", {"user_id", "age"}, {{"u1", "20"}, {"u2", "35"}, {"u3", "61"}});
    items = MakeTable("movies.csv", {"movie_id", "genres"},
                      {{"m1", "A|B"}, {"m2", "B"}, {"m3", "C|A"}, {"m4", "B|C"}});
    encoder.user = data::EntityEncoder(schema.user);
    encoder.user.Fit(users, {0, 1, 2});
    encoder.item = data::EntityEncoder(schema.item);
    encoder.item.Fit(items, {0, 1, 2, 3});
    encoder.user.Encode(users, &xu);
    encoder.item.Encode(items, &xi);
  }
};

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_ENCODED_FIXTURE_H_
