// The user-history feature's input (schema.h's HistorySpec): for each user, or for each training
// example, the item-embedding rows of the user's most recent positive interactions, as a Bags
// (CSR) whose bag lists them oldest first, so the last entry is the most recent.
//
// "Before" is by the interactions' timestamp where the files have one (an interaction counts for
// an example only with a strictly smaller timestamp: interactions of the same moment never see
// each other, so nothing about the example leaks into its own input), and by position in the
// given order otherwise (the files' row order taken as time). Only positives (label 1) enter a
// history: they are what the user chose. Ties in timestamp keep file order.
//
// Item rows map to rows of the item tower's id embedding table through that feature's bag of the
// encoded items table (one row per item), so a history is read straight from the shared table.
// Thread-safety: free functions, no shared state.
#ifndef TWOTOWER_DATA_HISTORY_H_
#define TWOTOWER_DATA_HISTORY_H_

#include <cstdint>
#include <vector>

#include "twotower/data/dataset.h"
#include "twotower/data/encoder.h"

namespace twotower::data {

// The index, among the item encoder's learned features (EncodedTable::bags), of the id feature a
// history is embedded with (schema.h's HistoryTableFeature); throws Error when there is none.
int HistoryTableBag(const EntityEncoder& item);

// The per-example histories of a training split, stored once per user: each user's positives as
// table rows, oldest first (timelines, one bag per user row), and for each example the end of its
// history in timelines.ids. Memory grows with the data, not with data x length.
struct ExampleHistories {
  Bags timelines;
  std::vector<int64_t> end;  // per example: one past the last entry before it
  int length = 0;

  // The histories of examples[0..n) of the split (users[i]: example i's user row) into `out` as n
  // bags, reusing its buffers (no allocation once they have grown). Throws Error for an example
  // or user out of range.
  void Gather(const int64_t* examples, const int32_t* users, int64_t n, Bags* out) const;
};

// Per example i of `data`: the table rows of the last `length` positives of the same user in
// `data` that come before example i. item_table_rows: the id feature's bag of the encoded items
// table (exactly one table row per item row). Throws Error when an item's bag does not hold
// exactly one row, or when length < 1.
ExampleHistories BuildExampleHistories(const Interactions& data, const Bags& item_table_rows,
                                       int length);
// The same gathered for every example (data.size() bags): for tests and small data.
Bags ExampleHistory(const Interactions& data, const Bags& item_table_rows, int length);

// Per user row (num_users bags): the table rows of the last `length` positives of the user in
// `sources` taken together (their timestamps when every source has them, else the order of
// `sources`, each in file order). What a model reads at evaluation and serving time: everything
// known before the interactions it predicts. Same errors as ExampleHistory; also when some sources
// have timestamps and others not.
Bags UserHistory(const std::vector<const Interactions*>& sources, int64_t num_users,
                 const Bags& item_table_rows, int length);

// One history given as item rows (e.g. an HTTP request's, oldest first): its last `length` as
// table rows, in a one-row Bags. Same errors as ExampleHistory.
Bags HistoryOfItems(const std::vector<int32_t>& item_rows, const Bags& item_table_rows, int length);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_HISTORY_H_
