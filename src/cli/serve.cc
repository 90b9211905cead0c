// twotower serve: the HTTP service (serve::Server) until SIGTERM; SIGHUP reloads.
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli.h"
#include "twotower/core/error.h"
#include "twotower/serve/server.h"

namespace twotower::cli {
namespace {

struct ServeArgs {
  std::string model, index, config, rerank;
  // Given or not, as "" is a value (refused with a message) and not "the default".
  std::optional<std::string> host, events;
  std::string port, threads;  // "" = not given; checked by the serve settings' declarations
  int candidates = -1;
  bool no_live_history = false;
  bool list_settings = false;
};

int RunServe(const ServeArgs& a) {
  if (a.list_settings) {
    for (const std::string& line : serve::ServeSettingsHelp()) std::cout << line << "\n";
    return 0;
  }
  serve::ServeArguments args;
  args.config = a.config;
  args.model = a.model;
  args.index = a.index;
  args.rerank = a.rerank;
  args.candidates = a.candidates;
  // The flags that are serve.yaml settings go through their declarations (type and range).
  if (a.host) args.settings.push_back({"host", *a.host, "--host"});
  if (!a.port.empty()) args.settings.push_back({"port", a.port, "--port"});
  if (!a.threads.empty()) args.settings.push_back({"threads", a.threads, "--threads"});
  if (a.events) args.settings.push_back({"events", *a.events, "--events"});
  if (a.no_live_history) args.settings.push_back({"live_history", "false", "--no-live-history"});
  const serve::ServeConfig config = serve::MakeServeConfig(args);
  // Signals go to one thread, which reloads (SIGHUP) or stops (SIGTERM, SIGINT): blocked here,
  // before any thread exists, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  serve::Server server(config);
  server.set_log([](const std::string& line) { std::cerr << line << std::endl; });
  const int port = server.Bind();
  // An IPv6 address is bracketed in a URL (RFC 3986).
  const bool v6 = config.host.find(':') != std::string::npos;
  std::cout << "serving on http://" << (v6 ? "[" : "") << config.host << (v6 ? "]" : "") << ":"
            << port << " (";
  for (size_t i = 0; i < config.variants.size(); ++i) {
    std::cout << (i ? ", " : "") << config.variants[i].name << ": " << config.variants[i].model;
    if (!config.variants[i].rerank.empty()) {
      std::cout << " re-ranked by " << config.variants[i].rerank << " (top "
                << config.variants[i].candidates << ")";
    }
  }
  std::cout << "; events " << config.events << ")" << std::endl;
  for (const std::string& note : server.notes()) std::cerr << note << std::endl;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (done) return;
      if (sig == SIGHUP) {
        server.Reload("SIGHUP");  // the log line comes through set_log
        continue;
      }
      std::cerr << "stopping: finishing requests in flight" << std::endl;
      server.Stop();
      return;
    }
  });
  server.Run();
  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);  // wakes it if Run ended otherwise
  waiter.join();
  std::cout << "stopped" << std::endl;
  return 0;
}

}  // namespace

Registered DefineServe(CLI::App* app, Common* /*common*/) {
  auto sv_p = std::make_shared<ServeArgs>();
  ServeArgs& sv = *sv_p;
  auto* serve_cmd = app->add_subcommand(
      "serve", "an HTTP recommendation service: recommend, score, similar, live items, A/B tests");
  serve_cmd->add_option("--model", sv.model, "model file (one variant, \"default\")");
  serve_cmd->add_option("--index", sv.index, "its index file (default: its items, exact)");
  serve_cmd->add_option("--config", sv.config,
                        "YAML file with a serve: section (variants, limits)");
  serve_cmd->add_option("--host", sv.host, "address to listen on (default 127.0.0.1)");
  serve_cmd->add_option("--port", sv.port, "port (default 8080; 0 = any free one)");
  serve_cmd->add_option("--threads", sv.threads,
                        "request threads; a connection holds one only while its request is "
                        "answered (0 = one per core, at least 2)");
  serve_cmd->add_option("--events", sv.events, "feedback event log (default events.jsonl)");
  serve_cmd->add_flag("--no-live-history", sv.no_live_history,
                      "likes sent to /v1/feedback do not join the users' histories and seen "
                      "items (serve.live_history: false)");
  serve_cmd->add_option("--rerank", sv.rerank,
                        "a ranker (model.kind: ranker) re-ordering what --model retrieves");
  serve_cmd->add_option("--candidates", sv.candidates,
                        "with --rerank: items retrieved per request (default " +
                            std::to_string(app::kDefaultCandidates) + ")");
  serve_cmd->add_flag("--list-settings", sv.list_settings,
                      "print every serve.yaml setting (type, default, range) and exit");
  return {serve_cmd, [sv_p] { return RunServe(*sv_p); }};
}

}  // namespace twotower::cli
