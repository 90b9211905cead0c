#include "twotower/core/settings.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <sstream>

#include "twotower/core/error.h"
#include "twotower/core/text.h"

namespace twotower {
double ParseFiniteDouble(const std::string& text, bool* ok) {
  double v = 0;
  const char* b = text.data();
  const char* e = text.data() + text.size();
  if (b != e && *b == '+') ++b;
  const auto r = std::from_chars(b, e, v);
  *ok = b != e && r.ec == std::errc() && r.ptr == e && std::isfinite(v);
  return v;
}

bool ParseInt64Text(const std::string& text, int64_t* v) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), *v);
  return !text.empty() && r.ec == std::errc() && r.ptr == text.data() + text.size();
}

namespace {

// A range bound as a person reads it: an integer in full (1000000, not 1e+06), else the shortest
// text that reads back as the same double (0.3, 1e-08; not the stream's 1.04858e+06).
std::string Bound(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(v));  // 1000000, not 1e+06
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

void CheckRange(const SettingSpec& s, double v, const std::string& where,
                const std::string& shown) {
  const bool low = s.min_exclusive ? v <= s.min : v < s.min;
  if (low || v > s.max) {
    throw Error(where + ": '" + s.key + "': " + shown + " is out of range (expected " +
                SettingRangeText(s) + ")");
  }
}

}  // namespace

const char* SettingKindName(SettingKind kind) {
  switch (kind) {
    case SettingKind::kInt:
    case SettingKind::kInt64:
      return "an integer";
    case SettingKind::kUint64:
      return "an integer >= 0";
    case SettingKind::kDouble:
      return "a number";
    case SettingKind::kString:
      return "a string";
    case SettingKind::kIntList:
      return "a list of integers";
    case SettingKind::kBool:
      return "true or false";
  }
  return "";
}

std::string SettingRangeText(const SettingSpec& s) {
  return std::string(s.min_exclusive ? "> " : ">= ") + Bound(s.min) + " and <= " + Bound(s.max);
}

void AssignSettingText(const SettingSpec& s, void* target, const std::string& text,
                       const std::string& where, std::string* text_out) {
  // Digits with an optional minus: an integer, however large (a '+' is not read as one).
  const size_t digits_from = !text.empty() && text[0] == '-' ? 1 : 0;
  const bool integer_text = digits_from < text.size() &&
                            text.find_first_not_of("0123456789", digits_from) == std::string::npos;
  auto fail = [&]() {
    if (integer_text && (s.kind == SettingKind::kInt || s.kind == SettingKind::kInt64 ||
                         s.kind == SettingKind::kUint64)) {
      // An integer that does not fit: "out of range", not "expected an integer".
      const std::string range = s.kind == SettingKind::kUint64
                                    ? std::string(">= 0 and <= 18446744073709551615")
                                    : SettingRangeText(s);
      throw Error(where + ": '" + s.key + "': " + Quote(text) + " is out of range (expected " +
                  range + ")");
    }
    throw Error(where + ": '" + s.key + "': expected " + SettingKindName(s.kind) + ", got " +
                Quote(text));
  };
  switch (s.kind) {
    case SettingKind::kInt:
    case SettingKind::kInt64: {
      int64_t v;
      if (!ParseInt64Text(text, &v)) fail();
      // An int setting's range is within int's: the bound is checked before the narrowing.
      CheckRange(s, static_cast<double>(v), where, text);
      if (s.kind == SettingKind::kInt) {
        *static_cast<int*>(target) = static_cast<int>(v);
      } else {
        *static_cast<int64_t*>(target) = v;
      }
      break;
    }
    case SettingKind::kUint64: {
      uint64_t v;
      const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) fail();
      *static_cast<uint64_t*>(target) = v;
      break;
    }
    case SettingKind::kDouble: {
      bool ok;
      const double v = ParseFiniteDouble(text, &ok);
      if (!ok) fail();
      CheckRange(s, v, where, text);
      *static_cast<double*>(target) = v;
      break;
    }
    case SettingKind::kString: {
      if (!s.choices.empty()) {
        bool found = false;
        std::string options;
        for (const std::string& choice : s.choices) {
          found |= choice == text;
          options += (options.empty() ? "" : ", ") + choice;
        }
        if (!found) {
          throw Error(where + ": '" + s.key + "': unknown value " + Quote(text) +
                      " (expected: " + options + ")");
        }
      }
      if (text_out != nullptr) {
        *text_out = text;
      } else {
        *static_cast<std::string*>(target) = text;
      }
      break;
    }
    case SettingKind::kBool: {
      if (text == "true" || text == "True" || text == "1") {
        *static_cast<bool*>(target) = true;
      } else if (text == "false" || text == "False" || text == "0") {
        *static_cast<bool*>(target) = false;
      } else {
        fail();
      }
      break;
    }
    case SettingKind::kIntList: {
      // "256,128" or "[256, 128]" from a flag; "" or "[]" is the empty list.
      std::string t = text;
      if (!t.empty() && t.front() == '[') t.erase(0, 1);
      if (!t.empty() && t.back() == ']') t.pop_back();
      std::vector<int> values;
      if (t.find_first_not_of(' ') == std::string::npos) {
        *static_cast<std::vector<int>*>(target) = values;
        break;
      }
      std::stringstream ss(t);
      std::string item;
      while (std::getline(ss, item, ',')) {
        const auto b = item.find_first_not_of(' ');
        const auto e = item.find_last_not_of(' ');
        if (b == std::string::npos) fail();
        int64_t v;
        if (!ParseInt64Text(item.substr(b, e - b + 1), &v)) fail();
        CheckRange(s, static_cast<double>(v), where, item);
        values.push_back(static_cast<int>(v));
      }
      *static_cast<std::vector<int>*>(target) = values;
      break;
    }
  }
}

void AssignSettingYaml(const SettingSpec& s, void* target, const YAML::Node& node,
                       const std::string& where, std::string* text_out) {
  if (s.kind == SettingKind::kIntList) {
    if (!node.IsSequence()) {
      throw Error(where + ": '" + s.key + "': expected a list of integers like [256, 128]");
    }
    std::string text;
    for (const auto& item : node) {
      if (!item.IsScalar()) throw Error(where + ": '" + s.key + "': expected a list of integers");
      text += (text.empty() ? "" : ",") + item.Scalar();
    }
    AssignSettingText(s, target, text, where, text_out);
    return;
  }
  if (!node.IsScalar()) {
    throw Error(where + ": '" + s.key + "': expected " + SettingKindName(s.kind) + ", got a " +
                (node.IsMap()        ? "mapping"
                 : node.IsSequence() ? "list"
                                     : "null"));
  }
  AssignSettingText(s, target, node.Scalar(), where, text_out);
}

void CheckSettingRange(const SettingSpec& s, const void* target, const std::string& where) {
  switch (s.kind) {
    case SettingKind::kInt: {
      const int v = *static_cast<const int*>(target);
      CheckRange(s, v, where, std::to_string(v));
      break;
    }
    case SettingKind::kInt64: {
      const int64_t v = *static_cast<const int64_t*>(target);
      CheckRange(s, static_cast<double>(v), where, std::to_string(v));
      break;
    }
    case SettingKind::kDouble: {
      const double v = *static_cast<const double*>(target);
      if (!std::isfinite(v)) {
        throw Error(where + ": '" + s.key + "': expected a finite number, got " + Bound(v));
      }
      CheckRange(s, v, where, Bound(v));
      break;
    }
    case SettingKind::kIntList:
      for (int v : *static_cast<const std::vector<int>*>(target)) {
        CheckRange(s, v, where, std::to_string(v));
      }
      break;
    default:
      break;
  }
}

nlohmann::json SettingValueJson(const SettingSpec& s, const void* target) {
  switch (s.kind) {
    case SettingKind::kInt:
      return *static_cast<const int*>(target);
    case SettingKind::kInt64:
      return *static_cast<const int64_t*>(target);
    case SettingKind::kUint64:
      return *static_cast<const uint64_t*>(target);
    case SettingKind::kDouble:
      return *static_cast<const double*>(target);
    case SettingKind::kString:
      return *static_cast<const std::string*>(target);
    case SettingKind::kIntList:
      return *static_cast<const std::vector<int>*>(target);
    case SettingKind::kBool:
      return *static_cast<const bool*>(target);
  }
  return nullptr;
}

void EmitSettingYaml(YAML::Emitter* out, const nlohmann::json& value) {
  if (value.is_boolean()) {
    *out << value.get<bool>();
  } else if (value.is_number_unsigned()) {
    *out << value.get<uint64_t>();
  } else if (value.is_number_integer()) {
    *out << value.get<int64_t>();
  } else if (value.is_number_float()) {
    *out << value.get<double>();
  } else if (value.is_string()) {
    *out << value.get<std::string>();
  } else if (value.is_array()) {
    *out << YAML::Flow << YAML::BeginSeq;
    for (const nlohmann::json& v : value) *out << v.get<int64_t>();
    *out << YAML::EndSeq;
  } else {
    *out << YAML::Null;
  }
}

std::string SettingHelpLine(const SettingSpec& s, const nlohmann::json& default_value) {
  std::string range;
  if (s.kind == SettingKind::kInt || s.kind == SettingKind::kInt64 ||
      s.kind == SettingKind::kDouble || s.kind == SettingKind::kIntList) {
    range = ", " + SettingRangeText(s);
  }
  for (const std::string& choice : s.choices) {
    range +=
        (range.empty() ? ", one of: " : " | ") + (choice.empty() ? std::string("\"\"") : choice);
  }
  return std::string(s.key) + " (" + SettingKindName(s.kind) + ", default " + default_value.dump() +
         range + "): " + s.help;
}

std::string YamlWhere(const std::string& file, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line >= 0) return file + ":" + std::to_string(mark.line + 1);
  return file;
}

}  // namespace twotower
