#include "twotower/data/history.h"

#include <algorithm>
#include <string>

#include "twotower/core/error.h"

namespace twotower::data {

namespace {

void CheckLength(int length) {
  if (length < 1) throw Error("history: length must be at least 1, got " + std::to_string(length));
}

int32_t TableRow(const Bags& item_table_rows, int32_t item) {
  if (item < 0 || item >= item_table_rows.rows()) {
    throw Error("history: item row " + std::to_string(item) + " outside the items table");
  }
  const int64_t b = item_table_rows.offsets[item], e = item_table_rows.offsets[item + 1];
  if (e - b != 1) {
    throw Error("history: the item id feature holds " + std::to_string(e - b) +
                " table rows for item row " + std::to_string(item) + " (expected exactly one)");
  }
  return item_table_rows.ids[b];
}

// One interaction of a user's time line: when, and which item.
struct Event {
  double time;
  int32_t item;
};

// Per user, their positives in `sources` ordered by time (stable: file order breaks ties, and is
// the order when there are no timestamps; then time is the running position).
std::vector<std::vector<Event>> Timelines(const std::vector<const Interactions*>& sources,
                                          int64_t num_users, bool* timed) {
  *timed = !sources.empty();
  for (const Interactions* s : sources) *timed = *timed && s->has_timestamp();
  for (const Interactions* s : sources) {
    if (s->has_timestamp() != *timed) {
      throw Error("history: " + s->source +
                  (*timed ? "" : " has timestamps and another file has none") +
                  " (the files of one history need timestamps in all or in none)");
    }
  }
  std::vector<std::vector<Event>> lines(num_users);
  double position = 0;
  for (const Interactions* s : sources) {
    for (int64_t i = 0; i < s->size(); ++i, position += 1) {
      if (s->label[i] != 1.0f) continue;
      const int32_t u = s->user_row[i];
      if (u < 0 || u >= num_users) throw Error("history: user row out of range");
      lines[u].push_back({*timed ? s->timestamp[i] : position, s->item_row[i]});
    }
  }
  for (auto& line : lines) {
    std::stable_sort(line.begin(), line.end(),
                     [](const Event& a, const Event& b) { return a.time < b.time; });
  }
  return lines;
}

// Appends the table rows of line[max(0, end - length) .. end) to `out` as one bag.
void AppendBag(const std::vector<Event>& line, size_t end, int length, const Bags& table,
               Bags* out) {
  const size_t begin = end > static_cast<size_t>(length) ? end - length : 0;
  for (size_t k = begin; k < end; ++k) out->ids.push_back(TableRow(table, line[k].item));
  out->offsets.push_back(static_cast<int64_t>(out->ids.size()));
}

}  // namespace

int HistoryTableBag(const EntityEncoder& item) {
  const auto& learned = item.learned();
  for (size_t f = 0; f < learned.size(); ++f) {
    if (learned[f].column == item.schema().id_column) {
      for (const FeatureSpec& spec : item.schema().features) {
        if (spec.column == learned[f].column && spec.type == FeatureType::kId) {
          return static_cast<int>(f);
        }
      }
    }
  }
  throw Error("history: the item side has no `id` feature on its id column '" +
              item.schema().id_column + "' to embed the history with");
}

ExampleHistories BuildExampleHistories(const Interactions& data, const Bags& item_table_rows,
                                       int length) {
  CheckLength(length);
  int64_t num_users = 0;
  for (int32_t u : data.user_row) num_users = std::max<int64_t>(num_users, u + 1);
  bool timed = false;
  const auto lines = Timelines({&data}, num_users, &timed);
  ExampleHistories h;
  h.length = length;
  for (const std::vector<Event>& line : lines) {
    AppendBag(line, line.size(), static_cast<int>(line.size()) + 1, item_table_rows, &h.timelines);
  }
  h.end.resize(data.size());
  for (int64_t i = 0; i < data.size(); ++i) {
    const std::vector<Event>& line = lines[data.user_row[i]];
    // Positives strictly before example i: an earlier timestamp, or an earlier row.
    const double t = timed ? data.timestamp[i] : static_cast<double>(i);
    const auto end = std::lower_bound(line.begin(), line.end(), t,
                                      [](const Event& e, double v) { return e.time < v; });
    h.end[i] = h.timelines.offsets[data.user_row[i]] + (end - line.begin());
  }
  return h;
}

void ExampleHistories::Gather(const int64_t* examples, const int32_t* users, int64_t n,
                              Bags* out) const {
  out->ids.clear();
  out->offsets.clear();
  out->offsets.push_back(0);
  for (int64_t i = 0; i < n; ++i) {
    if (examples[i] < 0 || examples[i] >= static_cast<int64_t>(end.size()) || users[i] < 0 ||
        users[i] >= timelines.rows()) {
      throw Error("history: example or user row out of range");
    }
    const int64_t e = end[examples[i]];
    const int64_t b = std::max(timelines.offsets[users[i]], e - length);
    if (e < timelines.offsets[users[i]] || e > timelines.offsets[users[i] + 1]) {
      throw Error("history: example " + std::to_string(examples[i]) + " is not user row " +
                  std::to_string(users[i]) + "'s");
    }
    out->ids.insert(out->ids.end(), timelines.ids.begin() + b, timelines.ids.begin() + e);
    out->offsets.push_back(static_cast<int64_t>(out->ids.size()));
  }
}

Bags ExampleHistory(const Interactions& data, const Bags& item_table_rows, int length) {
  const ExampleHistories h = BuildExampleHistories(data, item_table_rows, length);
  std::vector<int64_t> all(data.size());
  for (int64_t i = 0; i < data.size(); ++i) all[i] = i;
  Bags out;
  h.Gather(all.data(), data.user_row.data(), data.size(), &out);
  return out;
}

Bags UserHistory(const std::vector<const Interactions*>& sources, int64_t num_users,
                 const Bags& item_table_rows, int length) {
  CheckLength(length);
  bool timed = false;
  const auto lines = Timelines(sources, num_users, &timed);
  Bags out;
  out.offsets.reserve(num_users + 1);
  for (int64_t u = 0; u < num_users; ++u) {
    AppendBag(lines[u], lines[u].size(), length, item_table_rows, &out);
  }
  return out;
}

Bags HistoryOfItems(const std::vector<int32_t>& item_rows, const Bags& item_table_rows,
                    int length) {
  CheckLength(length);
  std::vector<Event> line;
  for (int32_t item : item_rows) line.push_back({0.0, item});
  Bags out;
  AppendBag(line, line.size(), length, item_table_rows, &out);
  return out;
}

}  // namespace twotower::data
