// `twotower`: the table of subcommands, and Main, which parses and runs the one given.
#include "cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "twotower/app/build_info.h"
#include "twotower/app/train.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/threads.h"

namespace twotower::cli {

// The one table of subcommands, in the order --help lists them.
constexpr Define kCommands[] = {DefineGenerate, DefineConvert,  DefineData,       DefineTrain,
                                DefineTune,     DefineEvaluate, DefineEmbed,      DefineRecommend,
                                DefineIndex,    DefineCompare,  DefineExperiment, DefineServe};

int ExitCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kCorruptData:
    case ErrorCode::kIo:
    case ErrorCode::kConflict:
    case ErrorCode::kUnavailable:
      return 1;
    case ErrorCode::kInternal:
      return 2;
  }
  return 2;
}

std::string Fixed(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Rethrows an app error whose field is `field` (its message "field: ...") as one about the
// command's flag ("--flag: ..."); any other error as it is.
[[noreturn]] void RethrowNamingFlag(const Error& e, const std::string& field,
                                    const std::string& flag) {
  if (e.field() != field) throw e;
  std::string message = e.what();
  if (message.rfind(field + ": ", 0) == 0) message = message.substr(field.size() + 2);
  throw Error(e.code(), flag + ": " + message, flag);
}

void PrintEval(const std::string& name, const app::EvalMetrics& m) {
  std::cout << name << ": " << m.count << " interactions  loss " << Fixed(m.loss) << "  accuracy "
            << Fixed(m.accuracy) << "  AUC " << Fixed(m.auc);
  if (!std::isnan(m.oracle_auc)) std::cout << "  (oracle AUC " << Fixed(m.oracle_auc) << ")";
  std::cout << "\n";
}

std::string FeatureSummary(const data::EntityEncoder& e) {
  std::string out = std::to_string(e.width()) + " dense columns";
  for (const data::LearnedFeature& f : e.learned()) {
    out += ", " + f.column + " embedding " + std::to_string(f.rows) + "x" + std::to_string(f.dim);
  }
  return out;
}

// One line per metric: the model's value at each K, and MostPop's beside it when given.
void PrintRanking(const std::string& title, const app::RankingMetrics& m,
                  const app::RankingMetrics* baseline) {
  std::cout << title << "\n";
  std::printf("  %-10s", "metric");
  for (int k : m.ks) std::printf("  %8s", (std::string("@").append(std::to_string(k))).c_str());
  if (baseline != nullptr) {
    std::printf("   | MostPop");
    for (int k : baseline->ks)
      std::printf("  %8s", (std::string("@").append(std::to_string(k))).c_str());
  }
  std::printf("\n");
  const char* names[] = {"recall", "ndcg", "hitrate", "mrr", "coverage"};
  const char* shown[] = {"Recall", "NDCG", "HitRate", "MRR", "Coverage"};
  for (int i = 0; i < 5; ++i) {
    std::printf("  %-10s", shown[i]);
    // std::string::append, not operator+ on a char*: GCC 12 warns falsely on the latter
    // (-Wrestrict, GCC bug 105329).
    auto key = [&](int k) { return std::string(names[i]).append("@").append(std::to_string(k)); };
    for (int k : m.ks) std::printf("  %8.4f", m.Get(key(k)));
    if (baseline != nullptr) {
      std::printf("   |        ");
      for (int k : baseline->ks) std::printf("  %8.4f", baseline->Get(key(k)));
    }
    std::printf("\n");
  }
  std::fflush(stdout);
}

std::string Signed(double v) { return (v >= 0 ? "+" : "") + Fixed(v, 4); }

namespace {

std::atomic<bool> g_stop_requested{false};
std::atomic<bool> g_stop_on_first_interrupt{false};

// Async-signal-safe: atomics, write, unlink (in RemoveTemporaryFilesFromSignalHandler), signal
// and raise.
void DieOfSignal(int sig) {
  RemoveTemporaryFilesFromSignalHandler();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void OnInterrupt(int sig) {
  if (sig == SIGINT && g_stop_on_first_interrupt.load() && !g_stop_requested.exchange(true)) {
    static const char kMessage[] =
        "\ninterrupted: training stops before its next batch (Ctrl-C again to stop at once)\n";
    [[maybe_unused]] const ssize_t n = ::write(2, kMessage, sizeof(kMessage) - 1);
    return;
  }
  // Files that belong together are being renamed into place: after them (files.h).
  if (DeferInterrupt(sig)) return;
  DieOfSignal(sig);
}

}  // namespace

void InstallInterruptHandler() {
  SetDeferredInterruptAction(DieOfSignal);
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

const std::atomic<bool>* StopOnFirstInterrupt() {
  if (dist::Distributed()) return nullptr;
  g_stop_on_first_interrupt.store(true);
  return &g_stop_requested;
}

namespace {

// `twotower --version`: the version, what the binary was compiled for, and what it computes with
// on this CPU (chosen at run time).
std::string VersionText() {
  const auto info = app::BuildInfo();
  std::string text = "twotower " + info[0].second;
  const char* const labels[] = {"", "compiled for", "fp32 training products",
                                "bf16 training products", "index scan kernels"};
  for (size_t i = 1; i < info.size(); ++i)
    text += std::string("\n") + labels[i] + ": " + info[i].second;
  return text;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"twotower: train, evaluate and serve two-tower recommendation models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return VersionText(); });
  Common common;
  std::vector<Registered> commands;
  for (const Define define : kCommands) commands.push_back(define(&app, &common));

  // Under mpirun a failing rank names itself and ends the whole job (dist::Abort), so the
  // other ranks never wait in a collective for it. Each message is one write, so the ranks'
  // lines do not interleave.
  const std::string who =
      dist::Distributed() ? "rank " + std::to_string(dist::Rank()) + ": " : std::string();
  const auto fail = [](int code) {
    if (dist::Distributed()) dist::Abort(code);
    return code;
  };
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known |= sub->get_name() == argv[1];
    }
    if (!known) {
      std::cerr << (who + "error: unknown command " + Quote(argv[1]) + " (expected: " + names +
                    ")\n");
      return fail(1);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion& e) {
    const int code = app.exit(e);
    // Printed, and still an error: a bad TWOTOWER_MAX_CPU_ISA / TWOTOWER_LOAD_AWARE stops every
    // command (the version text shows the message in its line).
    try {
      app::CheckKernelSettings();
    } catch (const Error& error) {
      std::cerr << who << "error: " << error.what() << "\n";
      return fail(1);
    }
    return code;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors look like every other error: one line, "error:", status 1.
    std::cerr << (who + "error: " + e.what() + " (see twotower --help)\n");
    return fail(1);
  }

  try {
    if (dist::Distributed()) {
      bool parallel = false;
      for (const CLI::App* sub : app.get_subcommands()) {
        parallel |= sub->get_name() == "train" || sub->get_name() == "recommend";
      }
      if (!parallel) {
        throw Error("under mpirun with " + std::to_string(dist::Size()) +
                    " ranks only `twotower train` and `twotower recommend --all-users` run "
                    "data-parallel; run this command as one process (without mpirun, or mpirun "
                    "-np 1)");
      }
    }
    app::CheckKernelSettings();  // a bad TWOTOWER_MAX_CPU_ISA stops every command before it starts
    // --threads goes through the settings table, so every command checks it alike.
    { app::ParseThreads(common.threads, "--threads"); }
    SetThreads(common.threads);
    for (const Registered& r : commands) {
      if (r.command->parsed()) return r.run();
    }
  } catch (const Error& e) {
    std::cout.flush();
    std::cerr << (who + (e.code() == ErrorCode::kInternal ? "internal error: " : "error: ") +
                  e.what() + "\n");
    return fail(ExitCode(e.code()));
  } catch (const std::bad_alloc&) {
    std::cout.flush();
    std::cerr << (who +
                  "error: out of memory (the request or the data needs more memory than this "
                  "machine has)\n");
    return fail(1);
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << (who + "internal error: " + e.what() + "\n");
    return fail(2);
  }
  return 0;
}

}  // namespace twotower::cli
