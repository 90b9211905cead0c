// The learned feature types (id, categorical embedding, multi_hot) and numeric missing values:
// layouts and bags written out by hand from the definitions in encoder.h / schema.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/fixtures.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/encoder.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::MakeTable;

FeatureSpec Spec(const std::string& column, FeatureType type) {
  FeatureSpec f;
  f.column = column;
  f.type = type;
  return f;
}

Table Movies() {
  return MakeTable("movies.csv", {"movie_id", "genres", "year", "kind"},
                   {{"m1", "Action|Comedy", "1995", "film"},
                    {"m2", "Drama", "", "series"},
                    {"m3", " Comedy | Drama ", "2001", "film"},
                    {"m4", "Western", "1960", "short"}});
}

TEST(FeatureTypesTest, IdAndMultiHotBagsUseVocabularyRowsPlusOne) {
  EntitySchema s;
  s.id_column = "movie_id";
  s.features = {Spec("movie_id", FeatureType::kId), Spec("genres", FeatureType::kMultiHot)};
  EntityEncoder enc(s);
  const Table t = Movies();
  enc.Fit(t, {0, 1, 2});  // m4 unseen in training
  ASSERT_EQ(enc.learned().size(), 2u);
  EXPECT_EQ(enc.learned()[0].rows, 4);  // m1, m2, m3 + the out-of-vocabulary row
  EXPECT_EQ(enc.learned()[1].rows, 4);  // Action, Comedy, Drama + OOV
  EXPECT_EQ(enc.learned()[1].pooling, Pooling::kMean);
  EXPECT_EQ(enc.width(), 0);
  EncodedTable e;
  enc.Encode(t, &e);
  ASSERT_EQ(e.rows(), 4);
  // Sorted vocabularies: ids m1 m2 m3 -> rows 1 2 3; genres Action Comedy Drama -> 1 2 3.
  EXPECT_THAT(e.bags[0].offsets, ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(e.bags[0].ids, ElementsAre(1, 2, 3, 0));
  EXPECT_THAT(e.bags[1].offsets, ElementsAre(0, 2, 3, 5, 6));
  EXPECT_THAT(e.bags[1].ids, ElementsAre(1, 2, 3, 2, 3, 0));  // spaces trimmed; Western unseen
}

TEST(FeatureTypesTest, HashedIdsNeedNoVocabulary) {
  EntitySchema s;
  s.id_column = "movie_id";
  FeatureSpec f = Spec("movie_id", FeatureType::kId);
  f.buckets = 7;
  s.features = {f};
  EntityEncoder enc(s);
  const Table t = Movies();
  enc.Fit(t, {0});
  EXPECT_EQ(enc.learned()[0].rows, 7);
  EncodedTable e;
  enc.Encode(t, &e);
  // FNV-1a 64 of "m1": offset basis xor 'm', * prime, xor '1', * prime (computed here by hand in
  // unsigned arithmetic, independently of the encoder's helper).
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : std::string("m1")) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  EXPECT_EQ(e.bags[0].ids[0], static_cast<int32_t>(h % 7));
  // The same bytes give the same row after a JSON round trip.
  const EntityEncoder back = EntityEncoder::FromJson(enc.ToJson(), "test");
  EncodedTable e2;
  back.Encode(t, &e2);
  EXPECT_EQ(e2.bags[0].ids, e.bags[0].ids);
}

TEST(FeatureTypesTest, CategoricalEmbeddingIsABagOfOneAndOneHotStaysDense) {
  EntitySchema s;
  s.id_column = "movie_id";
  FeatureSpec emb = Spec("kind", FeatureType::kCategorical);
  emb.encoding = Encoding::kEmbedding;
  emb.dim = 5;
  s.features = {emb};
  EntityEncoder enc(s);
  const Table t = Movies();
  enc.Fit(t, {0, 1});  // film, series
  EXPECT_EQ(enc.width(), 0);
  EXPECT_EQ(enc.learned()[0].dim, 5);
  EncodedTable e;
  enc.Encode(t, &e);
  EXPECT_THAT(e.bags[0].ids, ElementsAre(1, 2, 1, 0));  // short: unseen
}

TEST(FeatureTypesTest, MissingMeanImputesAndAddsAnIndicator) {
  EntitySchema s;
  s.id_column = "movie_id";
  FeatureSpec year = Spec("year", FeatureType::kNumeric);
  year.missing = Missing::kMean;
  s.features = {year};
  EntityEncoder enc(s);
  const Table t = Movies();
  enc.Fit(t, {0, 1, 2, 3});
  // Mean and population std of the present values 1995, 2001, 1960.
  const double mean = (1995.0 + 2001.0 + 1960.0) / 3.0;
  const double var = ((1995 - mean) * (1995 - mean) + (2001 - mean) * (2001 - mean) +
                      (1960 - mean) * (1960 - mean)) /
                     3.0;
  EXPECT_THAT(enc.OutputNames(), ElementsAre("year", "year_missing"));
  EncodedTable e;
  enc.Encode(t, &e);
  EXPECT_FLOAT_EQ(e.dense(0, 0), static_cast<float>((1995 - mean) / std::sqrt(var)));
  EXPECT_EQ(e.dense(0, 1), 0.0f);
  EXPECT_EQ(e.dense(1, 0), 0.0f);  // the mean, standardised
  EXPECT_EQ(e.dense(1, 1), 1.0f);
}

TEST(FeatureTypesTest, MissingValueUnderMissingErrorNamesFileLineAndTheFix) {
  EntitySchema s;
  s.id_column = "movie_id";
  s.features = {Spec("year", FeatureType::kNumeric)};
  EntityEncoder enc(s);
  const Table t = Movies();
  const std::string expected =
      "movies.csv:3: column 'year': missing value \"\" (expected a number; `missing: mean` "
      "in the feature spec imputes the mean)";
  EXPECT_EQ(ErrorMessage([&] { enc.Fit(t, {0, 1}); }), expected);
  enc.Fit(t, {0});
  EncodedTable e;
  EXPECT_EQ(ErrorMessage([&] { enc.Encode(t, &e); }), expected);
}

TEST(FeatureTypesTest, EmptyMultiHotListIsAnError) {
  EntitySchema s;
  s.id_column = "movie_id";
  s.features = {Spec("genres", FeatureType::kMultiHot)};
  EntityEncoder enc(s);
  const Table t = MakeTable("movies.csv", {"movie_id", "genres"}, {{"m1", "A"}, {"m2", " | "}});
  EXPECT_EQ(ErrorMessage([&] {
              enc.Fit(t, {0, 1});
            }),
            "movies.csv:3: column 'genres': empty list (expected one or more values separated by "
            "\"|\")");
}

TEST(FeatureTypesTest, EncodeRowGivesTheSameBagsAsEncode) {
  EntitySchema s;
  s.id_column = "movie_id";
  s.features = {Spec("movie_id", FeatureType::kId), Spec("genres", FeatureType::kMultiHot)};
  EntityEncoder enc(s);
  const Table t = Movies();
  enc.Fit(t, {0, 1, 2});
  EncodedTable all, one;
  enc.Encode(t, &all);
  enc.EncodeRow({{"genres", "Comedy|Drama"}, {"movie_id", "m3"}}, "request", &one);
  EXPECT_THAT(one.bags[0].ids, ElementsAre(3));
  EXPECT_THAT(one.bags[1].ids, ElementsAre(2, 3));
  EXPECT_THAT(ErrorMessage([&] {
                enc.EncodeRow({{"movie_id", "m3"}}, "request", &one);
              }),
              HasSubstr("request: missing field 'genres'"));
}

TEST(FeatureTypesTest, VocabularyValuesMustBeUtf8) {
  EntitySchema s;
  s.id_column = "movie_id";
  s.features = {Spec("genres", FeatureType::kMultiHot)};
  EntityEncoder enc(s);
  const Table t = MakeTable("movies.csv", {"movie_id", "genres"}, {{"m1", "A"}, {"m2", "Caf\xE9"}});
  EXPECT_EQ(ErrorMessage([&] {
              enc.Fit(t, {0, 1});
            }),
            "movies.csv:3: column 'genres': \"Caf\\xe9\" is not UTF-8 text (convert the file to "
            "UTF-8)");
}

TEST(FeatureTypesTest, ModelFileSpecsAreValidatedLikeConfigOnes) {
  // An empty delimiter from a hand-edited model file would make splitting loop forever.
  const nlohmann::json j = {{"column", "g"}, {"type", "multi_hot"}, {"delimiter", ""}};
  EXPECT_EQ(ErrorMessage([&] { FeatureSpecFromJson(j, "m.safetensors"); }),
            "m.safetensors: column 'g': the delimiter is empty");
  const nlohmann::json k = {{"column", "u"}, {"type", "id"}, {"dim", 0}};
  EXPECT_THAT(ErrorMessage([&] { FeatureSpecFromJson(k, "m"); }),
              HasSubstr("dim 0 is out of range"));
}

TEST(FeatureTypesTest, SchemaRefusesUnknownKeysPerType) {
  const nlohmann::json j = {{"column", "year"}, {"type", "numeric"}, {"pooling", "mean"}};
  EXPECT_EQ(ErrorMessage([&] { FeatureSpecFromJson(j, "cfg"); }),
            "cfg: column 'year': unknown key 'pooling' for type numeric (expected: column, "
            "missing, type)");
}

}  // namespace
}  // namespace twotower::data
