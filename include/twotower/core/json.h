// Parsing JSON from outside (model-file headers and metadata, and later request bodies) with
// nlohmann-json (RFC 8259), strictly: RFC 8259 leaves the meaning of a name given twice in one
// object to the reader, and nlohmann keeps the last one silently; here it is an error that names
// the key and where it is. Thread-safe: no shared state.
#ifndef TWOTOWER_CORE_JSON_H_
#define TWOTOWER_CORE_JSON_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace twotower {

// Parses `text` as one JSON value. Throws Error("<where>: ...") for invalid JSON (with the
// parser's line and column) or a key that appears twice in one object ("duplicate key 'b' in
// /a": the path of keys to the object, "*" for an array element).
nlohmann::json ParseJsonStrict(std::string_view text, const std::string& where);

}  // namespace twotower

#endif  // TWOTOWER_CORE_JSON_H_
