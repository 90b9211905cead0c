// twotower evaluate: an interactions file scored by a model (app::EvaluateInteractions).
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "twotower/app/app.h"
#include "twotower/core/error.h"

namespace twotower::cli {
namespace {

struct EvaluateArgs {
  std::string model, interactions, users, items, rerank;
  int candidates = -1;  // -1 = not given (app::kDefaultCandidates)
  std::vector<std::string> exclude;
};

int RunEvaluate(const EvaluateArgs& a) {
  app::DataOverrides overrides;
  overrides.users = a.users;
  overrides.items = a.items;
  if (a.candidates != -1 && a.rerank.empty()) {
    throw Error(
        "evaluate: --candidates is how many retrieved items --rerank re-orders; add "
        "--rerank RANKER or leave it out");
  }
  const app::Bundle b = app::LoadBundle(a.model, overrides);
  std::unique_ptr<app::Reranker> reranker;
  if (!a.rerank.empty()) {
    reranker = std::make_unique<app::Reranker>(app::LoadReranker(
        a.rerank, b, nullptr, a.candidates == -1 ? app::kDefaultCandidates : a.candidates));
  }
  const app::EvaluationReport r =
      app::EvaluateInteractions(b, a.interactions, a.exclude, reranker.get());
  PrintEval(a.interactions + (reranker ? " (the ranker's scores)" : ""), r.pointwise);
  for (const app::TaskMetric& t : r.tasks) {
    std::cout << "task " << t.name << ": " << t.metric << " " << Fixed(t.value) << "\n";
  }
  if (!r.ranked) return 0;
  const std::string ranked =
      !reranker ? "all " + std::to_string(b.items.num_rows()) + " items ranked"
      : reranker->candidates >= b.items.num_rows()
          ? "the ranker scoring all " + std::to_string(b.items.num_rows()) + " items"
          : "the top " + std::to_string(reranker->candidates) + " of " +
                std::to_string(b.items.num_rows()) + " items by <u, v> re-ranked by the ranker";
  std::string title = "ranking (" + std::to_string(r.ranking.users) + " users with " +
                      (b.positives_only ? "liked" : "any") + " interactions, " + ranked +
                      ", excluded:";
  for (const std::string& f : r.excluded) title += " " + f;
  if (r.excluded.empty()) title += " nothing";
  PrintRanking(title + "; MostPop counts the excluded files)", r.ranking, &r.most_popular);
  return 0;
}

}  // namespace

Registered DefineEvaluate(CLI::App* app, Common* common) {
  auto ev_p = std::make_shared<EvaluateArgs>();
  EvaluateArgs& ev = *ev_p;
  auto* evaluate = app->add_subcommand("evaluate", "score an interaction file with a model");
  evaluate->add_option("--model", ev.model, "model file (.safetensors)")->required();
  evaluate->add_option("--interactions", ev.interactions, "interactions CSV")->required();
  evaluate->add_option("--users", ev.users, "users CSV (default: the model's training data)");
  evaluate->add_option("--items", ev.items, "items CSV (default: the model's training data)");
  evaluate->add_option("--exclude", ev.exclude,
                       "interaction files whose items are excluded from each user's ranking, the "
                       "first also counted for MostPop (repeatable; default: the model's train "
                       "and val files, less the evaluated file)");
  evaluate->add_option("--rerank", ev.rerank,
                       "a ranker (model.kind: ranker): evaluate the two stages, the model's "
                       "retrieval re-ordered by the ranker, as recommend --rerank");
  evaluate
      ->add_option("--candidates", ev.candidates,
                   "with --rerank: items retrieved per user (default " +
                       std::to_string(app::kDefaultCandidates) +
                       "; the catalogue "
                       "size or more: the ranker scores every item)")
      ->check(CLI::Range(1, 1000000000));
  evaluate->add_option("--threads", common->threads, "threads (0 = all cores)");
  return {evaluate, [ev_p] { return RunEvaluate(*ev_p); }};
}

}  // namespace twotower::cli
