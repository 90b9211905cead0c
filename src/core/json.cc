#include "twotower/core/json.h"

#include <set>
#include <vector>

#include "twotower/core/error.h"

namespace twotower {

nlohmann::json ParseJsonStrict(std::string_view text, const std::string& where) {
  using Event = nlohmann::json::parse_event_t;
  // Per open container: whether it is an object, its keys so far, and the path segment that
  // leads to it (the parent object's key, or "*" for an array element).
  struct Open {
    bool object;
    std::set<std::string> keys;
    std::string segment;
  };
  std::vector<Open> open;
  std::string pending_key;  // the key whose value comes next
  auto pointer = [&]() {
    std::string p;
    for (size_t i = 1; i < open.size(); ++i) p += "/" + open[i].segment;
    return p;
  };
  auto callback = [&](int /*depth*/, Event event, nlohmann::json& parsed) {
    switch (event) {
      case Event::object_start:
      case Event::array_start: {
        const bool in_object = !open.empty() && open.back().object;
        open.push_back(
            Open{event == Event::object_start, {}, in_object ? pending_key : std::string("*")});
        break;
      }
      case Event::object_end:
      case Event::array_end:
        open.pop_back();
        break;
      case Event::key: {
        const std::string key = parsed.get<std::string>();
        if (!open.back().keys.insert(key).second) {
          const std::string at = pointer();
          throw Error(where + ": duplicate key " + Quote(key) + " in " +
                      (at.empty() ? std::string("the top-level object") : "the object at " + at) +
                      " (a key may appear once per object)");
        }
        pending_key = key;
        break;
      }
      case Event::value:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::out_of_range& e) {
    // A number the parser cannot hold ("1e400").
    std::string message = e.what();
    const size_t bracket = message.find("] ");
    if (bracket != std::string::npos) message.erase(0, bracket + 2);
    throw Error(where + ": invalid JSON: " + message);
  } catch (const nlohmann::json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    std::string message = e.what();
    const size_t bracket = message.find("] ");
    if (bracket != std::string::npos) message.erase(0, bracket + 2);
    throw Error(where + ": invalid JSON: " + message);
  }
}

}  // namespace twotower
