// `twotower data interactions`: any interaction log (who interacted with what, optionally how
// much and when) in the layout training reads, split into train / validation / test, with a
// retrieval config for it. `twotower data movielens` is a preset of the same splitter and writer
// (data/movielens.h).
//
// Input: one table, one row per interaction.
//   - CSV (RFC 4180, comma), TSV (tab, no quoting: IANA text/tab-separated-values) or Parquet,
//     by suffix (.csv, .tsv / .tab, .parquet) or by `delimiter`; `names` gives the columns of a
//     file without a header row (MovieLens' u.data: user, item, rating, timestamp).
//   - user and item columns (ids: any text of 1 to kMaxIdBytes bytes, compared byte for byte);
//     optional rating, weight (e.g. play counts, finite and >= 0) and timestamp (a number: seconds
//     or any other unit that orders time) columns.
//   - the label: `positive` "all" (every row is a positive: implicit feedback) or "COL>=X" /
//     "COL>X" on a numeric column (explicit feedback: rows below are kept as label 0, so that
//     evaluation sees them; training with `positives: liked` skips them).
//   - a (user, item) pair on several rows: `duplicates` "refuse" (the default: an Error naming
//     both lines) or "sum" (one row: weights summed, a row without a weight column counting 1;
//     the latest timestamp; the rating of the latest row; the label recomputed on the merged
//     row). Never kept as repeats: a repeated pair would land in both train and test.
//   - optional items and users tables (any format above, with a header): their id column has the
//     interactions' user / item column's name; every interaction must name a row. Their other
//     columns become tower features, types inferred (InferFeature) unless `item_features` /
//     `user_features` name them ("col:type,col:type"; "none" for the id alone).
//
// Output, into `out` (each file written atomically):
//   {train,val,test}/interactions.<ext>   user, item, [rating], [weight], label, [timestamp]
//   items.<ext>, users.<ext>             the tables, when given (all their rows: the catalogue)
//   twotower.yaml                         the retrieval recipe (in-batch softmax with logQ
//                                         correction, selected on validation Recall@10) over
//                                         these files; a tower without a table is its id alone
// Splits (every row in exactly one):
//   random           a seeded shuffle of all rows, cut at the fractions
//   user-temporal    per user, rows by time: the latest `test` fraction to test, the `val`
//                    fraction before it to validation (users with 3 or more rows; others all in
//                    train). Needs a timestamp column.
//   global-temporal  all rows by time, cut at the fractions: users first seen late are cold.
// With `users_need_train_row` (the default, random split), a user whose rows all fell into
// val / test has the first of them moved to train, so that every user the model is evaluated on
// was trained on (the count is reported); without it such a split is an Error naming the user.
// Thread-safety: free functions, no shared state.
#ifndef TWOTOWER_DATA_IMPORTER_H_
#define TWOTOWER_DATA_IMPORTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/data/csv.h"
#include "twotower/data/schema.h"

namespace twotower::data {

struct SplitOptions {
  std::string split = "random";  // random | user-temporal | global-temporal
  double val = 0.15;
  double test = 0.15;
  uint64_t seed = 0;
  std::string format = "csv";  // csv | parquet: the written tables' format
  bool users_need_train_row = true;
};

struct ImportOptions {
  std::string interactions;                        // the log's path
  std::string delimiter;                           // "" = by suffix; ",", "\t" ("tab"), ";" or "|"
  std::vector<std::string> names;                  // the columns of a file without a header row
  std::string user = "user_id", item = "item_id";  // column names
  std::string rating, weight, timestamp;           // optional column names ("" = none)
  std::string positive = "all";                    // "all", "COL>=X" or "COL>X"
  std::string duplicates = "refuse";               // refuse | sum
  std::string items, users;                        // optional tables' paths
  std::string item_features = "auto", user_features = "auto";  // auto | none | col:type,...
  SplitOptions split;
};

// A feature column of an items or users table with the type inferred for it (or given), and why.
struct InferredFeature {
  std::string column;
  std::string type;    // numeric | categorical | multi_hot | "" (not used: reason says why)
  std::string reason;  // e.g. "integers, 80 distinct", "unique per row: text, not a feature"
};

struct ImportSummary {
  int64_t rows = 0;    // rows read
  int64_t merged = 0;  // rows folded into another by duplicates: sum
  int64_t interactions = 0, users = 0, items = 0, positives = 0;
  int64_t train = 0, val = 0, test = 0;
  int64_t moved_to_train = 0;   // users_need_train_row: rows moved from val / test
  int64_t cold_users = 0;       // users without a training row (global-temporal)
  int64_t cold_items = 0;       // items of val / test without a training row
  int64_t catalogue_items = 0;  // rows of the items table (0 without one)
  std::vector<InferredFeature> item_features, user_features;
  std::vector<std::string> written;  // the files written, config last
};

// Reads, checks, splits and writes as above. Throws Error naming the file and line (or Parquet
// row) and the column for a malformed row, an empty or over-long id, a non-numeric or non-finite
// rating / weight / timestamp, a negative weight, a repeated pair under "refuse", an id missing
// from a given table; the flag for a bad option (unknown split / format / duplicates, fractions
// outside [0, 1), a malformed `positive`, a column named twice, a user-temporal split without a
// timestamp, `out` equal to the log's folder being fine but not to a table's path).
ImportSummary ImportInteractions(const std::string& out, const ImportOptions& options);

// The type a table column gets as a tower feature, from its cells (empty cells ignored):
// all numbers -> numeric, unless integers with few distinct values (at most 1/10 of the rows and
// at most 1,000), which are categories (codes); text with the multi-value delimiter '|' ->
// multi_hot; text with at most half as many distinct values as rows -> categorical (an
// embedding); text unique per row (a title, a URL) -> not a feature. Rows: the column's cells.
InferredFeature InferFeature(const std::string& column, const std::vector<std::string>& cells);

// ---- shared with the MovieLens preset (data/movielens.h) ------------------------------------

// An interaction log in memory: ids interned (user[i] indexes user_ids), one entry per row.
struct InteractionLog {
  std::string source;  // the file, for messages
  std::string user_column = "user_id", item_column = "item_id";
  std::vector<std::string> user_ids, item_ids;  // the distinct ids, in order of first appearance
  std::vector<int32_t> user, item;
  std::vector<double> rating;     // empty = no rating column
  std::vector<double> weight;     // empty = no weight column
  std::vector<double> timestamp;  // empty = no timestamp column
  std::vector<uint8_t> label;     // 0 / 1
  std::vector<int64_t> line;      // the row's line (CSV / TSV) or row number (Parquet)
  std::string rating_column = "rating", weight_column = "weight", timestamp_column = "timestamp";
  std::string label_column = "label";
  bool numbered_rows = false;  // line holds Parquet row numbers

  int64_t size() const { return static_cast<int64_t>(user.size()); }
  std::string Where(int64_t row) const {
    return source + (numbered_rows ? ": row " : ":") + std::to_string(line[row]);
  }
};

// What the recipe's config names besides the interactions.
struct RecipeTables {
  std::string items_file, users_file;  // "" = no table: that tower is its id alone
  std::vector<FeatureSpec> item_features, user_features;  // besides the id
  bool history = false;  // the user-history feature (user-temporal splits with timestamps)
};

// Splits `log` (split_of[i]: 0 train, 1 val, 2 test) as SplitOptions says; fills the summary's
// train / val / test / moved_to_train / cold counts. Throws Error as ImportInteractions.
std::vector<uint8_t> SplitLog(const InteractionLog& log, const SplitOptions& options,
                              ImportSummary* summary);

// Writes the three interaction files of `log` into out_dir (format from options) and returns
// their paths.
std::vector<std::string> WriteSplits(const InteractionLog& log,
                                     const std::vector<uint8_t>& split_of,
                                     const std::string& out_dir, const SplitOptions& options);

// The retrieval recipe as twotower.yaml text for the files in out_dir (ext ".csv" / ".parquet").
// `command` is the line that wrote it (the config's first comment).
std::string RecipeYaml(const std::string& command, const std::string& out_dir,
                       const std::string& ext, const InteractionLog& log, const RecipeTables& t,
                       const std::string& run_name);

// Checks the split fractions and names; throws Error naming the flag.
void ValidateSplitOptions(const SplitOptions& options);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_IMPORTER_H_
