// Test helpers that run the real `twotower` binary (TWOTOWER_CLI_PATH) as a user would, with
// stdout and stderr captured to files, and split its output.
#ifndef TWOTOWER_TESTS_TESTING_CLI_RUNNER_H_
#define TWOTOWER_TESTS_TESTING_CLI_RUNNER_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "testing/temp_dir.h"

namespace twotower::testing {

struct CliResult {
  int code = -1;
  std::string out, err;
};

inline std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs `twotower <args>` with stdout and stderr captured to files in `scratch`; `shell_prefix`
// (e.g. "ulimit -f 8; ") runs first in the same shell.
inline CliResult RunCli(const std::vector<std::string>& args, const TempDir& scratch,
                        const std::string& shell_prefix = "") {
  static std::atomic<int> counter{0};
  const std::string base = scratch.File("cli_run_" + std::to_string(counter++));
  std::string command = shell_prefix + ShellQuote(TWOTOWER_CLI_PATH);
  for (const std::string& a : args) {
    command += ' ';
    command += ShellQuote(a);
  }
  command += " >";
  command += ShellQuote(base + ".out");
  command += " 2>";
  command += ShellQuote(base + ".err");
  command += " </dev/null";
  const int status = std::system(command.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadBytes(base + ".out");
  r.err = ReadBytes(base + ".err");
  return r;
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

inline std::vector<std::string> Fields(const std::string& line, char sep) {
  std::vector<std::string> f;
  std::istringstream in(line);
  std::string field;
  while (std::getline(in, field, sep)) f.push_back(field);
  return f;
}

// The one entry of a folder (a run folder inside an --output-dir), or "".
inline std::string OnlyEntry(const std::string& dir) {
  std::string found;
  for (const auto& e : std::filesystem::directory_iterator(dir)) found = e.path().string();
  return found;
}

inline std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> w;
  std::istringstream in(line);
  std::string word;
  while (in >> word) w.push_back(word);
  return w;
}

// A user's error: exit status 1, one "error: ..." message on stderr containing `message`.
// The result rows of a single-user `recommend`: (movie id, score) in printed order.
inline std::vector<std::pair<std::string, double>> ResultRows(const std::string& out) {
  std::vector<std::pair<std::string, double>> rows;
  const std::vector<std::string> lines = Lines(out);
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::vector<std::string> w = Words(lines[i]);
    if (w.size() >= 3 && w[0] == std::to_string(rows.size() + 1)) {
      rows.emplace_back(w[1], std::stod(w[2]));
    }
  }
  return rows;
}

// The user with the most interactions in `data_dir`/train/interactions.csv (as generated).
inline std::string BusiestUser(const std::string& data_dir) {
  std::map<std::string, int> counts;
  for (const std::string& line : Lines(ReadBytes(data_dir + "/train/interactions.csv"))) {
    const std::vector<std::string> f = Fields(line, ',');
    if (f.size() == 5 && f[0] != "user_id") ++counts[f[0]];
  }
  std::string best;
  for (const auto& [user, n] : counts) {
    if (best.empty() || n > counts[best]) best = user;
  }
  return best;
}

inline void ExpectUserError(const CliResult& r, const std::string& message) {
  EXPECT_EQ(r.code, 1) << "typed errors exit with 1; stderr: " << r.err;
  EXPECT_THAT(r.err, ::testing::StartsWith("error: ")) << r.err;
  EXPECT_THAT(r.err, ::testing::HasSubstr(message));
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_CLI_RUNNER_H_
