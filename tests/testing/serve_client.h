// A twotower server on an ephemeral port in a thread of the test, and a JSON call to it with
// cpp-httplib's client: the server as a client sees it.
#ifndef TWOTOWER_TESTS_TESTING_SERVE_CLIENT_H_
#define TWOTOWER_TESTS_TESTING_SERVE_CLIENT_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "twotower/serve/server.h"

// After the twotower headers (Eigen): see src/serve/server.cc.
#include <httplib.h>

namespace twotower::testing {

using serve::ServeConfig;
using serve::Server;
using Json = nlohmann::json;

// A server running in a thread for the test's life.
class Running {
 public:
  // `log`: Server::set_log's, set before Run.
  explicit Running(ServeConfig config, std::function<void(const std::string&)> log = {}) {
    config.port = 0;
    config.threads = 4;
    server_ = std::make_unique<Server>(config);
    if (log) server_->set_log(std::move(log));
    port_ = server_->Bind();
    thread_ = std::thread([this] { server_->Run(); });
  }
  ~Running() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    server_->Stop();
    thread_.join();
  }
  httplib::Client Client() const { return httplib::Client("127.0.0.1", port_); }
  int port() const { return port_; }
  Server& server() { return *server_; }

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

struct Answer {
  int status = -1;
  Json body;
  std::string text;
};

inline Answer Call(httplib::Client& c, const std::string& method, const std::string& path,
                   const std::string& body = "") {
  httplib::Result r = method == "GET"      ? c.Get(path.c_str())
                      : method == "PUT"    ? c.Put(path.c_str(), body, "application/json")
                      : method == "DELETE" ? c.Delete(path.c_str())
                                           : c.Post(path.c_str(), body, "application/json");
  Answer a;
  if (!r) return a;
  a.status = r->status;
  a.text = r->body;
  try {
    a.body = Json::parse(r->body);
  } catch (const Json::exception&) {
  }
  return a;
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_SERVE_CLIENT_H_
