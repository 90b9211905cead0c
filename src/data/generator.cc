#include "twotower/data/generator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <unordered_set>
#include <vector>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/rng.h"
#include "twotower/data/table.h"

namespace twotower::data {
namespace {

constexpr std::array<const char*, 6> kGenres = {"Action", "Comedy", "Drama",
                                                "Horror", "Sci-Fi", "Romance"};
constexpr std::array<const char*, 3> kActivity = {"low", "medium", "high"};
constexpr std::array<double, 3> kActivityShare = {0.3, 0.5, 0.2};
constexpr std::array<double, 3> kActivityWeight = {1.0, 2.0, 4.0};
constexpr std::array<double, 3> kActivityEffect = {-0.3, 0.0, 0.3};

// Latent model constants; see the header.
constexpr double kBias = 0.0;
constexpr double kGenreMatch = 2.8;
constexpr double kRating = 1.8;
constexpr double kAgeYear = 1.3;

struct User {
  int age;
  int gender;  // 0 = M, 1 = F
  int genre;
  int activity;
};

struct Movie {
  int genre;
  int year;
  int duration;
  double avg_rating;
};

double Taste(const User& u, const Movie& m) {
  const double preferred_year = 2018.0 - 0.8 * (u.age - 18);
  const double t = 1.0 - std::abs(m.year - preferred_year) / 15.0;
  return std::clamp(t, -1.5, 1.0);
}

double TrueLogit(const User& u, const Movie& m) {
  return kBias + kGenreMatch * (u.genre == m.genre ? 1.0 : 0.0) + kRating * (m.avg_rating - 3.5) +
         kAgeYear * Taste(u, m) + kActivityEffect[u.activity];
}

int PickActivity(Rng* rng) {
  const double u = rng->Uniform();
  if (u < kActivityShare[0]) return 0;
  if (u < kActivityShare[0] + kActivityShare[1]) return 1;
  return 2;
}

std::string Format(const char* fmt, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, value);
  return buf;
}

// The entity tables as Parquet, then each split through `write_split(name, begin, end)`.
template <typename WriteSplit>
void WriteParquetFiles(const std::vector<User>& users, const std::vector<Movie>& movies,
                       const std::string& out_dir, WriteSplit write_split, int64_t n_train,
                       int64_t n_val, int64_t n) {
  TypedTable u;
  u.AddColumn("user_id", ParquetType::kInt64);
  u.AddColumn("age", ParquetType::kInt32);
  u.AddColumn("gender", ParquetType::kString);
  u.AddColumn("favorite_genre", ParquetType::kString);
  u.AddColumn("activity_level", ParquetType::kString);
  auto add_string = [](ParquetColumn* c, const std::string& v) {
    c->string_index.push_back(static_cast<int32_t>(c->strings.size()));
    c->strings.push_back(v);
  };
  for (size_t i = 0; i < users.size(); ++i) {
    u.columns[0].ints.push_back(static_cast<int64_t>(i) + 1);
    u.columns[1].ints.push_back(users[i].age);
    add_string(&u.columns[2], users[i].gender == 0 ? "M" : "F");
    add_string(&u.columns[3], kGenres[users[i].genre]);
    add_string(&u.columns[4], kActivity[users[i].activity]);
  }
  TypedTable m;
  m.AddColumn("movie_id", ParquetType::kInt64);
  m.AddColumn("genre", ParquetType::kString);
  m.AddColumn("year", ParquetType::kInt32);
  m.AddColumn("duration", ParquetType::kInt32);
  m.AddColumn("avg_rating", ParquetType::kDouble);
  for (size_t i = 0; i < movies.size(); ++i) {
    m.columns[0].ints.push_back(static_cast<int64_t>(i) + 1);
    add_string(&m.columns[1], kGenres[movies[i].genre]);
    m.columns[2].ints.push_back(movies[i].year);
    m.columns[3].ints.push_back(movies[i].duration);
    m.columns[4].doubles.push_back(std::stod(Format("%.1f", movies[i].avg_rating)));
  }
  WriteTable(out_dir + "/users.parquet", u);
  WriteTable(out_dir + "/movies.parquet", m);
  write_split("train", 0, n_train);
  write_split("val", n_train, n_train + n_val);
  write_split("test", n_train + n_val, n);
}

}  // namespace

GeneratorSummary GenerateLabData(const GeneratorOptions& options, const std::string& out_dir) {
  constexpr int64_t kMaxEntities = 100'000'000;
  if (options.users <= 0 || options.users > kMaxEntities) {
    throw Error("--users: expected a count from 1 to 100000000");
  }
  if (options.movies <= 0 || options.movies > kMaxEntities) {
    throw Error("--movies: expected a count from 1 to 100000000");
  }
  if (options.interactions < 3) throw Error("--interactions: expected at least 3");
  const double pairs = static_cast<double>(options.users) * static_cast<double>(options.movies);
  if (static_cast<double>(options.interactions) > 0.5 * pairs) {
    throw Error("--interactions: " + std::to_string(options.interactions) +
                " is more than half of the " + Format("%.0f", pairs) +
                " possible user-movie pairs; use more users or movies");
  }
  if (options.format != "csv" && options.format != "parquet") {
    throw Error("--format: unknown format " + Quote(options.format) + " (expected: csv, parquet)");
  }
  const bool parquet = options.format == "parquet";
  Rng rng(options.seed);

  std::vector<User> users(options.users);
  std::string users_csv = "user_id,age,gender,favorite_genre,activity_level\n";
  for (int64_t i = 0; i < options.users; ++i) {
    User& u = users[i];
    u.age = 18 + static_cast<int>(rng.Below(53));
    u.gender = static_cast<int>(rng.Below(2));
    u.genre = static_cast<int>(rng.Below(kGenres.size()));
    u.activity = PickActivity(&rng);
    users_csv += std::to_string(i + 1) + "," + std::to_string(u.age) + "," +
                 (u.gender == 0 ? "M" : "F") + "," + kGenres[u.genre] + "," +
                 kActivity[u.activity] + "\n";
  }

  std::vector<Movie> movies(options.movies);
  std::string movies_csv = "movie_id,genre,year,duration,avg_rating\n";
  for (int64_t i = 0; i < options.movies; ++i) {
    Movie& m = movies[i];
    m.genre = static_cast<int>(rng.Below(kGenres.size()));
    m.year = 1970 + static_cast<int>(rng.Below(54));
    m.duration =
        static_cast<int>(std::lround(std::clamp(110.0 + 20.0 * rng.Normal(), 75.0, 200.0)));
    m.avg_rating = std::round(std::clamp(3.4 + 0.6 * rng.Normal(), 1.0, 5.0) * 10.0) / 10.0;
    movies_csv += std::to_string(i + 1) + "," + kGenres[m.genre] + "," + std::to_string(m.year) +
                  "," + std::to_string(m.duration) + "," + Format("%.1f", m.avg_rating) + "\n";
  }

  // Users weighted by activity: cumulative weights and a binary search per draw.
  std::vector<double> cumulative(options.users);
  double total = 0.0;
  for (int64_t i = 0; i < options.users; ++i) {
    total += kActivityWeight[users[i].activity];
    cumulative[i] = total;
  }

  struct Row {
    int64_t user, movie;
    int rating;
    double p;
  };
  std::vector<Row> rows;
  rows.reserve(options.interactions);
  std::unordered_set<int64_t> seen;
  int64_t liked = 0;
  while (static_cast<int64_t>(rows.size()) < options.interactions) {
    const double r = rng.Uniform() * total;
    int64_t user = std::upper_bound(cumulative.begin(), cumulative.end(), r) - cumulative.begin();
    user = std::min<int64_t>(user, options.users - 1);
    const int64_t movie = static_cast<int64_t>(rng.Below(options.movies));
    if (!seen.insert(user * options.movies + movie).second) continue;
    const double z = TrueLogit(users[user], movies[movie]);
    const double p = 1.0 / (1.0 + std::exp(-z));
    const double latent = 3.5 + 0.8 * (z + rng.Logistic());
    // rating >= 4 exactly when latent >= 3.5, i.e. when z + noise >= 0.
    const int rating = static_cast<int>(std::clamp(std::floor(latent + 0.5), 1.0, 5.0));
    liked += rating >= 4;
    rows.push_back({user, movie, rating, p});
  }

  // Random split (Fisher-Yates with our RNG, so the split is the same everywhere).
  for (int64_t i = static_cast<int64_t>(rows.size()) - 1; i > 0; --i) {
    std::swap(rows[i], rows[rng.Below(i + 1)]);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t n_train = static_cast<int64_t>(std::llround(n * options.train_fraction));
  const int64_t n_val = static_cast<int64_t>(std::llround(n * options.val_fraction));
  if (n_train <= 0 || n_val <= 0 || n - n_train - n_val <= 0) {
    throw Error("--interactions: too few to split into train, val and test");
  }

  // The tables belong together: an interrupt waits until all are in place (core/files.h).
  InterruptHold hold;
  if (parquet) {
    WriteParquetFiles(
        users, movies, out_dir,
        [&](const std::string& name, int64_t begin, int64_t end) {
          TypedTable t;
          t.AddColumn("user_id", ParquetType::kInt64);
          t.AddColumn("movie_id", ParquetType::kInt64);
          t.AddColumn("rating", ParquetType::kInt32);
          t.AddColumn("liked", ParquetType::kInt32);
          t.AddColumn("p_true", ParquetType::kDouble);
          for (int64_t i = begin; i < end; ++i) {
            const Row& row = rows[i];
            t.columns[0].ints.push_back(row.user + 1);
            t.columns[1].ints.push_back(row.movie + 1);
            t.columns[2].ints.push_back(row.rating);
            t.columns[3].ints.push_back(row.rating >= 4 ? 1 : 0);
            // The CSV's "%.6f", as a double: the same value in both formats.
            t.columns[4].doubles.push_back(std::stod(Format("%.6f", row.p)));
          }
          WriteTable(out_dir + "/" + name + "/interactions.parquet", t);
        },
        n_train, n_val, n);
  }
  auto write_split = [&](const std::string& name, int64_t begin, int64_t end) {
    std::string csv = "user_id,movie_id,rating,liked,p_true\n";
    csv.reserve(csv.size() + (end - begin) * 28);
    for (int64_t i = begin; i < end; ++i) {
      const Row& row = rows[i];
      csv += std::to_string(row.user + 1) + "," + std::to_string(row.movie + 1) + "," +
             std::to_string(row.rating) + "," + (row.rating >= 4 ? "1" : "0") + "," +
             Format("%.6f", row.p) + "\n";
    }
    WriteFileAtomically(out_dir + "/" + name + "/interactions.csv", csv);
  };
  if (!parquet) {
    WriteFileAtomically(out_dir + "/users.csv", users_csv);
    WriteFileAtomically(out_dir + "/movies.csv", movies_csv);
    write_split("train", 0, n_train);
    write_split("val", n_train, n_train + n_val);
    write_split("test", n_train + n_val, n);
  }

  GeneratorSummary summary;
  summary.train = n_train;
  summary.val = n_val;
  summary.test = n - n_train - n_val;
  summary.liked_rate = static_cast<double>(liked) / n;
  return summary;
}

}  // namespace twotower::data
