#include "http.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "twotower/core/error.h"

namespace twotower::serve::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

std::string Request::Header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

namespace {

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

class Connection;

// A read that failed because the client closed, reset or was too slow (the request timeout), or
// because the server stopped: there is nobody to answer. Other failures are the parser's (400).
bool Gone(const beast::error_code& ec) {
  return ec && (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
                ec == beast::error::timeout || ec == asio::error::eof ||
                ec == asio::error::operation_aborted ||
                ec.category() == asio::error::get_system_category());
}

}  // namespace

// Declared so that the loop (and the connections its queued handlers hold) is destroyed before
// the registry the connections leave as they go.
struct Server::Impl {
  Limits limits;
  Handler handler;
  std::mutex mutex;  // guards connections, run_over
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
  std::condition_variable stop_cv;
  bool run_over = false;
  std::atomic<bool> stopping{false};
  asio::io_context ioc;
  tcp::acceptor acceptor;  // on its own strand: accepts and Stop's close never overlap

  Impl(Limits l, Handler h)
      : limits(l),
        handler(std::move(h)),
        ioc(std::max(1, l.threads)),
        acceptor(asio::make_strand(ioc)) {}
  void Accept();
};

namespace {

// One TCP connection: reads a request, answers it, and waits for the next (keep-alive) until
// the client closes, a limit is passed, or the server stops. Every step runs on the
// connection's strand, so its members need no lock.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Server::Impl* server)
      : stream_(std::move(socket)), server_(server) {}
  ~Connection() {
    std::lock_guard<std::mutex> lock(server_->mutex);
    server_->connections.erase(this);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> lock(server_->mutex);
      server_->connections.emplace(this, weak_from_this());
    }
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->WaitRequest(); });
  }

  // Stop: a connection waiting for a next request is closed now; one answering closes after it.
  void CloseIfIdle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->Close();
    });
  }

 private:
  const Limits& limits() const { return server_->limits; }

  void WaitRequest() {
    if (server_->stopping) return Close();
    if (buffer_.size() > 0) return ReadHeader();  // a pipelined request is already here
    idle_ = true;
    stream_.expires_after(Seconds(limits().idle_timeout_seconds));
    stream_.async_read_some(buffer_.prepare(16 << 10),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->idle_ = false;
                              if (ec) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits().max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(limits().max_body_bytes));
    // From the request's first byte: the whole header and body within the request timeout.
    stream_.expires_after(Seconds(limits().request_timeout_seconds));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) return Refuse(431);
    // Content-Length over the limit is found with the header.
    if (ec == bhttp::error::body_limit) return Refuse(413);
    // Any Transfer-Encoding is refused (411 below), a malformed one too.
    if (ec == bhttp::error::bad_transfer_encoding) return Refuse(411);
    if (Gone(ec)) return Close();  // the client went away, or was too slow: nobody to answer
    if (ec) return Refuse(400);
    const auto& msg = parser_->get();
    if (msg.target().size() > static_cast<size_t>(limits().max_target_bytes)) return Refuse(414);
    // A chunked (or otherwise transfer-coded) body has no length to check before it is read.
    if (msg.count(bhttp::field::transfer_encoding) > 0) return Refuse(411);
    const auto length = parser_->content_length();
    if (length && *length > static_cast<std::uint64_t>(limits().max_body_bytes)) {
      return Refuse(413);
    }
    if (parser_->is_done()) return Answer();
    // curl sends "Expect: 100-continue" before a body over 1 KiB and waits for this (RFC 9110
    // section 10.1.1).
    if (beast::iequals(msg[bhttp::field::expect], "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue),
                               [self = shared_from_this()](beast::error_code e, size_t) {
                                 if (e) return self->Close();
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  void ReadBody() {
    // The timer set at the header still runs: the body has what is left of the request timeout.
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec == bhttp::error::body_limit) return self->Refuse(413);
                        if (Gone(ec)) return self->Close();
                        if (ec) return self->Refuse(400);
                        self->Answer();
                      });
  }

  Request TakeRequest() {
    Request req;
    if (!parser_) return req;  // (a refused header: the fields parsed before the refusal)
    auto& msg = parser_->get();
    req.method = std::string(msg.method_string());
    const std::string target(msg.target());
    req.path = target.substr(0, target.find('?'));
    for (const auto& field : msg) {
      req.headers.emplace_back(Lower(std::string(field.name_string())), std::string(field.value()));
    }
    if (parser_->is_done()) req.body = std::move(msg.body());
    return req;
  }

  void Call(const Request& req, Response& res) {
    try {
      server_->handler(req, res);
    } catch (const std::exception& e) {
      res = Response();
      res.status = 500;
      res.body = std::string("{\"error\": \"internal error\", \"field\": \"\"}");
    }
  }

  void Answer() {
    const bool keep_alive = parser_->get().keep_alive();
    const Request req = TakeRequest();
    Response res;
    Call(req, res);
    Write(std::move(res), keep_alive && !server_->stopping, req.method == "HEAD");
  }

  // A request that cannot be read further: answered, then the connection is closed (its body,
  // if any, was not read, so the next request's start is unknown).
  void Refuse(int status) {
    Request req = TakeRequest();
    req.refused = status;
    Response res;
    Call(req, res);
    Write(std::move(res), false, false);
  }

  void Write(Response res, bool keep_alive, bool head) {
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(res.status));
    response_.set(bhttp::field::content_type, res.content_type);
    for (const auto& [name, value] : res.headers) response_.set(name, value);
    response_.keep_alive(keep_alive);
    response_.body() = std::move(res.body);
    response_.prepare_payload();
    if (head) response_.body().clear();  // HEAD: GET's header (its Content-Length), no body
    stream_.expires_after(Seconds(limits().request_timeout_seconds));
    bhttp::async_write(stream_, response_,
                       [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                         if (ec) return self->Close();
                         if (!keep_alive) return self->Drain();
                         self->WaitRequest();
                       });
  }

  // Closing with unread bytes in the socket makes the kernel send a reset, which can destroy
  // the answer just written before the client reads it (RFC 9112 section 9.6): stop sending,
  // then read and discard what the client still sends, for at most a second, before closing.
  void Drain() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    drain_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    DrainSome();
  }
  void DrainSome() {
    const auto left = drain_deadline_ - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return Close();
    stream_.expires_after(left);
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(64 << 10),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->DrainSome();
                            });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  Server::Impl* server_;  // outlives the connection (see Server::Impl)
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  bool idle_ = false;  // waiting for the first byte of a next request
  std::chrono::steady_clock::time_point drain_deadline_;
};

}  // namespace

void Server::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc),
                        [self = this](beast::error_code ec, tcp::socket socket) {
                          if (self->stopping || ec == asio::error::operation_aborted) return;
                          if (!ec) {
                            beast::error_code ignored;
                            // Header and body in one write, but a small answer must not wait for
                            // the client's delayed ACK (Nagle's algorithm).
                            socket.set_option(tcp::no_delay(true), ignored);
                            std::make_shared<Connection>(std::move(socket), self)->Start();
                            return self->Accept();
                          }
                          // Out of file descriptors or another passing failure: try again shortly,
                          // not in a loop.
                          auto timer = std::make_shared<asio::steady_timer>(
                              self->acceptor.get_executor(), std::chrono::milliseconds(50));
                          timer->async_wait([self, timer](beast::error_code) {
                            if (!self->stopping) self->Accept();
                          });
                        });
}

Server::Server(Limits limits, Handler handler)
    : impl_(std::make_unique<Impl>(limits, std::move(handler))) {}

// What Stop queued and Run did not run is destroyed with the loop.
Server::~Server() { Stop(); }

int Server::Bind(const std::string& host, int port) {
  Impl& s = *impl_;
  if (host.empty()) {
    // The resolver would read an empty passive name as every interface (0.0.0.0).
    throw Error(ErrorCode::kInvalidArgument,
                "serve: the host is empty: expected an IP address (127.0.0.1, or 0.0.0.0 for "
                "every interface) or a host name",
                "host");
  }
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    // A host name ("localhost"): the resolver's first IPv4 address, else its first address
    // (localhost's IPv4 first, so http://localhost:PORT reaches it from clients that try
    // 127.0.0.1 only).
    tcp::resolver resolver(s.ioc);
    const auto found = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
    if (ec || found.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "serve: cannot bind " + host +
                      ": not an IP address, and not a host name this machine resolves (" +
                      (ec ? ec.message() : std::string("no address")) + ")",
                  "host");
    }
    address = found.begin()->endpoint().address();
    for (const auto& entry : found) {
      if (entry.endpoint().address().is_v4()) {
        address = entry.endpoint().address();
        break;
      }
    }
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    // A port another process holds is a conflict with the machine's state (the Python module's
    // ConflictError), other refusals the operating system's (IoError).
    throw Error(
        ec == asio::error::address_in_use ? ErrorCode::kConflict : ErrorCode::kIo,
        "serve: cannot bind " + host + ":" + std::to_string(port) + " (" + ec.message() + ")");
  }
  return s.acceptor.local_endpoint().port();
}

void Server::Run() {
  Impl& s = *impl_;
  if (!s.stopping) s.Accept();
  // After Stop, requests in flight get their request timeout to finish, and the loop is then
  // stopped whatever is left.
  std::thread watchdog([&s] {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.stop_cv.wait(lock, [&s] { return s.stopping || s.run_over; });
    if (s.run_over) return;
    const auto grace = Seconds(2 * s.limits.request_timeout_seconds + 1);
    if (!s.stop_cv.wait_for(lock, grace, [&s] { return s.run_over; })) s.ioc.stop();
  });
  // An exception out of a completion handler (out of memory while reading a request) ends that
  // handler only: the loop goes on serving the other connections (Asio's documented pattern).
  auto run = [&s] {
    while (true) {
      try {
        s.ioc.run();
        return;
      } catch (const std::exception&) {
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < s.limits.threads; ++i) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.run_over = true;
  }
  s.stop_cv.notify_all();
  watchdog.join();
}

void Server::Stop() {
  Impl& s = *impl_;
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.stopping.exchange(true)) return;
    for (auto& [ptr, weak] : s.connections) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  s.stop_cv.notify_all();
  asio::post(s.acceptor.get_executor(), [&s] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
  });
  for (auto& c : open) c->CloseIfIdle();
}

}  // namespace twotower::serve::http
