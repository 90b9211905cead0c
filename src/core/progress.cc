#include "twotower/core/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace twotower {
namespace {

std::atomic<ProgressSink*> g_sink{nullptr};
std::atomic<int64_t> g_next_bar{1};

}  // namespace

ScopedProgressSink::ScopedProgressSink(ProgressSink* sink) : previous_(g_sink.exchange(sink)) {}

ScopedProgressSink::~ScopedProgressSink() { g_sink.store(previous_); }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(::fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (enabled_) sink_ = g_sink.load();
  if (sink_ != nullptr) {
    id_ = g_next_bar.fetch_add(1);
    sink_->Start(id_, label_, total_);
  }
}

ProgressBar::~ProgressBar() {
  if (!finished_) Finish();
}

void ProgressBar::Update(int64_t done, const std::string& status) {
  done_ = done;
  if (!enabled_ || (!tty_ && sink_ == nullptr)) return;
  const auto now = std::chrono::steady_clock::now();
  // Redraw at most 20 times a second: drawing is slower than a training step.
  if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(50)) return;
  last_draw_ = now;
  Draw(status, false);
}

void ProgressBar::Finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  Draw(status, true);
}

void ProgressBar::Draw(const std::string& status, bool final_line) {
  if (sink_ != nullptr) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (final_line) {
      sink_->Finish(id_, done_, seconds, status);
    } else {
      sink_->Update(id_, done_, seconds, status);
    }
    return;
  }
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  const int filled = static_cast<int>(fraction * kWidth + 0.5);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char line[256];
  std::snprintf(line, sizeof(line), "%-6s [%s] %lld/%lld  %.1fs%s%s", label_.c_str(), bar.c_str(),
                static_cast<long long>(done_), static_cast<long long>(total_), seconds,
                status.empty() ? "" : "  ", status.c_str());
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  } else if (final_line) {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

}  // namespace twotower
