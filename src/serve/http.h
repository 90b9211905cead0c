// The serving layer's HTTP/1.1 transport: an event-driven server on Boost.Beast / Boost.Asio
// (Debian's libboost1.74-dev, headers only). Internal to src/serve: server.cc routes and answers;
// this file reads requests and writes responses.
//
// Why event-driven (issue 24, cases 09 and 10): cpp-httplib, used before, gives each open
// keep-alive connection one pool thread for as long as it stays open and reads only one request
// per read, so idle or slowly-dripping clients starved /healthz, 16+ keep-alive connections
// queued behind one another (p99 0.2-0.7 s), and HTTP/1.1-pipelined requests were dropped. Here a
// connection holds a thread only while its request is being answered; Beast keeps the bytes after
// one request in the connection's buffer, so pipelined requests are answered in order (RFC 9112
// section 9.3.2). Of Debian's event-driven servers (libmicrohttpd, h2o, libevent's evhttp, Beast)
// Beast is the one in C++, with a maintained parser that enforces header and body limits and
// Asio's timers for the time limits; the C ones hand the body over in pieces through callbacks.
//
// Time limits (README "Serving"):
//   - idle_timeout_seconds: a keep-alive connection that sends no byte of a next request for this
//     long is closed;
//   - request_timeout_seconds: from a request's first byte, its whole header and body must arrive
//     within this (a client dripping a body is cut off, the connection closed), and writing its
//     response gets the same again.
#ifndef TWOTOWER_SERVE_HTTP_H_
#define TWOTOWER_SERVE_HTTP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace twotower::serve::http {

struct Request {
  std::string method;  // as sent: "GET", "POST", ...
  std::string path;    // the request target without its query
  std::string body;    // exactly Content-Length bytes
  // Header fields, names lower-cased; a repeated field appears once per occurrence.
  std::vector<std::pair<std::string, std::string>> headers;
  // Not 0 when the transport refused the request before it could be read (the handler writes
  // the message; the connection is closed after the answer):
  //   400 malformed request line or header, 411 a chunked body (no length to check before it is
  //   read), 413 Content-Length over max_body_bytes, 414 a target over max_target_bytes,
  //   431 header section over max_header_bytes.
  int refused = 0;
  // The first value of header `name` (lower case), "" when absent.
  std::string Header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields (e.g. Allow)
};

struct Limits {
  int threads = 1;                      // threads running the event loop and the handlers
  int64_t max_body_bytes = 1 << 20;     // larger Content-Length: refused 413
  int64_t max_header_bytes = 64 << 10;  // larger header section: refused 431
  int64_t max_target_bytes = 8 << 10;   // longer request target: refused 414
  double request_timeout_seconds = 10;  // a whole request's header + body, and its response
  double idle_timeout_seconds = 5;      // between requests on a keep-alive connection
};

// Called on an event-loop thread for every request read (or refused: Request::refused), one at a
// time per connection. It must not throw; what it writes into the Response is sent.
using Handler = std::function<void(const Request&, Response&)>;

class Server {
 public:
  Server(Limits limits, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Binds host:port (port 0: any free one) and listens; returns the port. Throws twotower::Error
  // naming the address when it cannot.
  int Bind(const std::string& host, int port);
  // Serves until Stop(): limits.threads threads run the loop (this one among them). Returns once
  // every request in flight was answered and every connection closed.
  void Run();
  // Stops accepting, closes idle connections, lets requests in flight finish (each within
  // request_timeout_seconds) and makes Run() return. Callable from any thread, before or during
  // Run().
  void Stop();

  struct Impl;  // http.cc's (public only so that its connections can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace twotower::serve::http

#endif  // TWOTOWER_SERVE_HTTP_H_
