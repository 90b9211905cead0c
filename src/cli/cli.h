// The `twotower` command's parts (not a public header): one file per subcommand under src/cli/,
// each a Define function that adds its flags to the app and returns what runs it; the table in
// cli.cc lists them. A command parses flags, calls `app` once and prints: no logic of its own
// beyond presentation. Every error from the library surfaces as one line and the exit status
// ExitCode gives.
#ifndef TWOTOWER_CLI_CLI_H_
#define TWOTOWER_CLI_CLI_H_

#include <atomic>
#include <functional>
#include <string>

#include "twotower/app/app.h"
#include "twotower/core/error.h"
#include "twotower/data/encoder.h"

namespace CLI {
class App;
}  // namespace CLI

namespace twotower::cli {

// Flags every command shares, read after parsing.
struct Common {
  int threads = 0;  // --threads (0 = all cores)
};

// A defined subcommand: the CLI11 subcommand, and what runs it once parsed (its exit status).
struct Registered {
  CLI::App* command = nullptr;
  std::function<int()> run;
};
using Define = Registered (*)(CLI::App* app, Common* common);

// The subcommands, one file each; cli.cc's table lists them in the order --help shows.
Registered DefineGenerate(CLI::App* app, Common* common);
Registered DefineConvert(CLI::App* app, Common* common);
Registered DefineData(CLI::App* app, Common* common);
Registered DefineTrain(CLI::App* app, Common* common);
Registered DefineTune(CLI::App* app, Common* common);
Registered DefineEvaluate(CLI::App* app, Common* common);
Registered DefineEmbed(CLI::App* app, Common* common);
Registered DefineRecommend(CLI::App* app, Common* common);
Registered DefineIndex(CLI::App* app, Common* common);
Registered DefineCompare(CLI::App* app, Common* common);
Registered DefineExperiment(CLI::App* app, Common* common);
Registered DefineServe(CLI::App* app, Common* common);

// ---- interrupts ---------------------------------------------------------------------------------

// Ctrl-C (SIGINT) and SIGTERM: src/main.cc installs this handler before any command runs. It
// removes every temporary file being written (core/files.h; an atomic write's target keeps its
// old bytes) and the process then dies of the signal as it would have (status 130 / 143 in a
// shell). `serve` takes these signals in a thread of its own instead (a clean stop).
void InstallInterruptHandler();
// For a command that can stop cleanly (train): from now on the first SIGINT only sets the
// returned flag (training stops before its next batch, its run folder resumable) and a second
// one stops at once as above. Null under mpirun, where every rank would have to stop at the same
// batch: there the handler above applies.
const std::atomic<bool>* StopOnFirstInterrupt();

// ---- presentation shared by the commands ------------------------------------------------------

// v with `digits` decimals; "n/a" for NaN.
std::string Fixed(double v, int digits = 4);
// Fixed(v, 4) with a sign: "+0.0123", "-0.0040".
std::string Signed(double v);
// Rethrows an app error whose field is `field` (its message "field: ...") as one about the
// command's flag ("--flag: ..."); any other error as it is.
[[noreturn]] void RethrowNamingFlag(const Error& e, const std::string& field,
                                    const std::string& flag);
// "<name>: N interactions  loss ..  accuracy ..  AUC .." (and the oracle AUC when known).
void PrintEval(const std::string& name, const app::EvalMetrics& m);
// "D dense columns, <column> embedding RxD, ...".
std::string FeatureSummary(const data::EntityEncoder& e);
// One line per metric: the model's value at each K, and MostPop's beside it when given.
void PrintRanking(const std::string& title, const app::RankingMetrics& m,
                  const app::RankingMetrics* baseline);

}  // namespace twotower::cli

#endif  // TWOTOWER_CLI_CLI_H_
