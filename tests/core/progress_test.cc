// Tests for core/progress.h's sink: what a front end that draws its own bars (the Python
// module's tqdm) receives.
#include "twotower/core/progress.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace twotower {
namespace {

struct Event {
  std::string kind;  // start, update, finish
  int64_t bar;
  std::string label;
  int64_t value;  // total for start, done otherwise
  std::string status;
};

class RecordingSink : public ProgressSink {
 public:
  void Start(int64_t bar, const std::string& label, int64_t total) override {
    events.push_back({"start", bar, label, total, ""});
  }
  void Update(int64_t bar, int64_t done, double seconds, const std::string& status) override {
    EXPECT_GE(seconds, 0.0);
    events.push_back({"update", bar, "", done, status});
  }
  void Finish(int64_t bar, int64_t done, double seconds, const std::string& status) override {
    EXPECT_GE(seconds, 0.0);
    events.push_back({"finish", bar, "", done, status});
  }
  std::vector<Event> events;
};

TEST(ProgressSinkTest, EnabledBarsReportToTheInstalledSinkAndDisabledOnesDoNot) {
  RecordingSink sink;
  {
    ScopedProgressSink scope(&sink);
    ProgressBar off("quiet", 10, /*enabled=*/false);
    off.Update(5);
    off.Finish();
    ProgressBar bar("train", 1000, /*enabled=*/true);
    // A thousand updates in a tight loop: throttled to 20 a second, so few reach the sink.
    for (int i = 1; i < 1000; ++i) bar.Update(i, "loss 0.5");
    {
      ProgressBar inner("val", 3, true);  // a bar inside another
      inner.Update(3);
    }                               // finished by its destructor
    bar.Update(1000, "loss 0.25");  // the last step is always drawn
    bar.Finish("done");
  }
  ProgressBar after("after", 2, true);  // the sink is gone: stderr, not the sink
  after.Finish();

  ASSERT_GE(sink.events.size(), 5u);
  const Event& first = sink.events.front();
  EXPECT_EQ(first.kind, "start");
  EXPECT_EQ(first.label, "train");
  EXPECT_EQ(first.value, 1000);
  const int64_t train = first.bar;
  int64_t val = -1, train_updates = 0, finishes = 0;
  for (const Event& e : sink.events) {
    EXPECT_NE(e.label, "quiet");
    EXPECT_NE(e.label, "after");
    if (e.kind == "start" && e.label == "val") val = e.bar;
    if (e.kind == "update" && e.bar == train) ++train_updates;
    if (e.kind == "finish") ++finishes;
  }
  ASSERT_NE(val, -1);
  EXPECT_NE(val, train);
  EXPECT_LT(train_updates, 100);  // throttled (the loop takes well under 5 s)
  EXPECT_EQ(finishes, 2);
  const Event& last = sink.events.back();
  EXPECT_EQ(last.kind, "finish");
  EXPECT_EQ(last.bar, train);
  EXPECT_EQ(last.value, 1000);
  EXPECT_EQ(last.status, "done");
  // The val bar finished with its own count.
  bool val_finished = false;
  for (const Event& e : sink.events) {
    if (e.kind == "finish" && e.bar == val) {
      EXPECT_EQ(e.value, 3);
      val_finished = true;
    }
  }
  EXPECT_TRUE(val_finished);
}

TEST(ProgressSinkTest, ScopesNestAndRestoreThePreviousSink) {
  RecordingSink outer_sink, inner_sink;
  ScopedProgressSink outer(&outer_sink);
  {
    ScopedProgressSink inner(&inner_sink);
    ProgressBar bar("a", 1, true);
    bar.Finish();
  }
  ProgressBar bar("b", 1, true);
  bar.Finish();
  ASSERT_EQ(inner_sink.events.size(), 2u);
  EXPECT_EQ(inner_sink.events[0].label, "a");
  ASSERT_EQ(outer_sink.events.size(), 2u);
  EXPECT_EQ(outer_sink.events[0].label, "b");
}

}  // namespace
}  // namespace twotower
