// MovieLens: reads the GroupLens MovieLens releases and writes them in the lab's layout, split
// into train / validation / test, with a ready training config.
//
// Layouts recognised in the source folder (F. Maxwell Harper and Joseph A. Konstan, "The
// MovieLens Datasets: History and Context", ACM TiiS 2015; the README of each release):
//   ml-100k       u.data (user \t item \t rating \t timestamp), u.user (id|age|gender|occupation|
//                 zip), u.item (id|title|release date|video date|url|19 genre flags, Latin-1),
//                 u.genre (name|index; the standard 19 names when absent)
//   ml-1m         ratings.dat (UserID::MovieID::Rating::Timestamp), users.dat
//                 (UserID::Gender::Age::Occupation::Zip-code), movies.dat (MovieID::Title::Genres)
//   ml-10m        ratings.dat and movies.dat as ml-1m, no users.dat
//   ml-latest     ratings.csv (userId,movieId,rating,timestamp), movies.csv (movieId,title,genres;
//   (20m/25m/32m) RFC 4180 quoting)
// Text is UTF-8 where it is valid UTF-8 and Latin-1 otherwise (ml-100k, ml-1m), converted to
// UTF-8; a UTF-8 byte-order mark and CR line ends are dropped.
//
// Written to the output folder:
//   users.csv        user_id[,age,gender,occupation,zip_prefix] (features where the release has
//                    them; otherwise only the users that rated something)
//   movies.csv       movie_id,title,year,genres   (year from the title's "(1995)" or the release
//                    date; empty when neither has one; genres "Action|Comedy")
//   {train,val,test}/interactions.csv   user_id,movie_id,rating,liked,timestamp
//                    (liked = rating >= like_threshold)
//   twotower.yaml    a training config for this folder (features, loss and the settings
//                    measured best on ML-100k; BENCHMARKS.md)
// Splits (each rating in exactly one split):
//   random           a seeded shuffle of all ratings, cut at the fractions
//   user-temporal    per user, ratings by time: the latest `test` fraction to test, the `val`
//                    fraction before it to validation (at least one each for users with 3+)
//   global-temporal  all ratings by time, cut at the fractions (users first seen late have no
//                    training history: cold start)
// Thread-safety: free functions, no shared state.
#ifndef TWOTOWER_DATA_MOVIELENS_H_
#define TWOTOWER_DATA_MOVIELENS_H_

#include <cstdint>
#include <string>

namespace twotower::data {

struct MovieLensOptions {
  std::string split = "random";  // random | user-temporal | global-temporal
  double val = 0.15;
  double test = 0.15;
  uint64_t seed = 0;
  double like_threshold = 4.0;
  // "csv" or "parquet": the tables' format (Parquet: each table converted from the CSV the
  // loader writes, types as `twotower convert` infers them, then the CSV removed).
  std::string format = "csv";
};

struct MovieLensSummary {
  std::string layout;  // "ml-100k", "ml-1m", "ml-10m", "ml-latest"
  int64_t users = 0, movies = 0, ratings = 0;
  int64_t train = 0, val = 0, test = 0;
  double liked_rate = 0.0;
  int64_t cold_users = 0;  // users with no training rating (global-temporal only)
};

// Reads the release in `src` and writes the layout above into `out` (each file atomically).
// Throws Error naming the folder for an unknown layout (listing what it looked for), file:line
// for a malformed line, a rating of an unknown movie, a rating outside 0.5 - 5, a negative
// timestamp or a (user, movie) pair rated twice, and the user for a split that leaves a user
// without training ratings (random, user-temporal); also bad fractions, a like threshold outside
// (0, 5], and --out equal to --src.
MovieLensSummary ConvertMovieLens(const std::string& src, const std::string& out,
                                  const MovieLensOptions& options);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_MOVIELENS_H_
