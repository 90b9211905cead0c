// Declared settings, in the spirit of LightGBM's config.h: each setting of a configuration struct
// is declared once, as a Setting (its dotted key, value kind, allowed range or values, one line of
// help, and where its value lives in the struct), and its default is the struct's member
// initialiser. Everything else is derived from that table by the functions here: reading YAML
// (errors name file:line and the key), `key=value` text (`--set`, command-line flags), range
// checks, the JSON and YAML a run or a model file keeps, and the `--list-settings` help lines.
// train/config.h (training runs) and serve/server.h (serve.yaml) declare their tables with it.
//
// Plain functions over the table; thread-safe for distinct objects.
#ifndef TWOTOWER_CORE_SETTINGS_H_
#define TWOTOWER_CORE_SETTINGS_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace YAML {
class Node;
class Emitter;
}  // namespace YAML

namespace twotower {

// A setting's value type: the C++ member it binds is int, int64_t, uint64_t, double,
// std::string, std::vector<int> or bool respectively.
enum class SettingKind { kInt, kInt64, kUint64, kDouble, kString, kIntList, kBool };

constexpr double kSettingInf = std::numeric_limits<double>::infinity();

// What a setting is, apart from where its value lives.
struct SettingSpec {
  const char* key = "";  // dotted path, e.g. "training.epochs" (YAML: training: {epochs: ..})
  SettingKind kind = SettingKind::kString;
  // Numbers and each element of a list: min <= v (min < v when min_exclusive) and v <= max.
  double min = -kSettingInf;
  bool min_exclusive = false;
  double max = kSettingInf;
  std::vector<std::string> choices;  // strings: the allowed values (empty: any)
  const char* help = "";             // one line
};

// A setting of the struct T: `bind` returns the address of its member in a T (of the C++ type
// SettingKind names). A member of another type (an enum) is kString with `to_text` /
// `from_text` instead, which convert between the member and its text.
template <typename T>
struct Setting : SettingSpec {
  std::function<void*(T&)> bind;
  std::function<std::string(const T&)> to_text;
  std::function<void(T&, const std::string&)> from_text;
};

// The whole of `text` as an integer (from_chars: no blanks, no '+'); false otherwise.
bool ParseInt64Text(const std::string& text, int64_t* v);
// The whole of `text` as a finite double (a leading '+' allowed); *ok false otherwise.
double ParseFiniteDouble(const std::string& text, bool* ok);

// "an integer", "a number", "a string", "a list of integers", "true or false".
const char* SettingKindName(SettingKind kind);
// ">= 0 and <= 1024" (bounds as the shortest text that reads back the same).
std::string SettingRangeText(const SettingSpec& s);

// Parses `text` as s's kind into *target (the member s binds), checking the range and choices.
// A list is "256,128" or "[256, 128]" ("" or "[]": empty); a bool is true / false / 1 / 0.
// Throws Error("<where>: '<key>': expected <kind>, got \"x\""), "...: x is out of range
// (expected ...)" or "...: unknown value \"x\" (expected: a, b)". `target` is null for a setting
// with from_text; then *text_out receives the checked text instead.
void AssignSettingText(const SettingSpec& s, void* target, const std::string& text,
                       const std::string& where, std::string* text_out = nullptr);
// The same from a YAML node: a scalar, or a sequence for a list. Throws Error naming `where`
// and the key for another shape.
void AssignSettingYaml(const SettingSpec& s, void* target, const YAML::Node& node,
                       const std::string& where, std::string* text_out = nullptr);
// Throws the out-of-range Error of AssignSettingText when the number (or a list element) at
// *target is outside s's range; `where` names the source.
void CheckSettingRange(const SettingSpec& s, const void* target, const std::string& where);
// The member's value as JSON: a number, string, bool or list of integers.
nlohmann::json SettingValueJson(const SettingSpec& s, const void* target);
// Writes a SettingValueJson value to a YAML emitter (lists in flow style: [256, 128]).
void EmitSettingYaml(YAML::Emitter* out, const nlohmann::json& value);
// "<key> (<kind>, default <json>[, <range>][, one of: a | b]): <help>".
std::string SettingHelpLine(const SettingSpec& s, const nlohmann::json& default_value);
// "<file>:<line>" of a YAML node (line from 1), or the file alone when the node has no mark.
std::string YamlWhere(const std::string& file, const YAML::Node& node);

// ---- over a table ------------------------------------------------------------------------------

template <typename T>
const Setting<T>* FindSetting(const std::vector<Setting<T>>& table, const std::string& key) {
  for (const Setting<T>& s : table) {
    if (key == s.key) return &s;
  }
  return nullptr;
}

// Assigns text to the setting (see AssignSettingText), through from_text where it has one.
template <typename T>
void AssignText(const Setting<T>& s, T* object, const std::string& text, const std::string& where) {
  if (s.from_text) {
    std::string checked;
    AssignSettingText(s, nullptr, text, where, &checked);
    s.from_text(*object, checked);
  } else {
    AssignSettingText(s, s.bind(*object), text, where);
  }
}

template <typename T>
void AssignYaml(const Setting<T>& s, T* object, const YAML::Node& node, const std::string& where) {
  if (s.from_text) {
    std::string checked;
    AssignSettingYaml(s, nullptr, node, where, &checked);
    s.from_text(*object, checked);
  } else {
    AssignSettingYaml(s, s.bind(*object), node, where);
  }
}

template <typename T>
nlohmann::json ValueJson(const Setting<T>& s, const T& object) {
  if (s.to_text) return s.to_text(object);
  return SettingValueJson(s, s.bind(const_cast<T&>(object)));
}

// Every numeric setting of `object` within its range (for values set in code, not parsed).
template <typename T>
void CheckRanges(const std::vector<Setting<T>>& table, const T& object, const std::string& where) {
  for (const Setting<T>& s : table) {
    if (!s.from_text) CheckSettingRange(s, s.bind(const_cast<T&>(object)), where);
  }
}

// The keys of the table, ", "-separated, for "unknown key" messages; with a section ("serve"),
// the keys under it without the prefix.
template <typename T>
std::string KnownSettingKeys(const std::vector<Setting<T>>& table, const std::string& section) {
  std::string out;
  for (const Setting<T>& s : table) {
    std::string key = s.key;
    if (!section.empty()) {
      if (key.rfind(section + ".", 0) != 0) continue;
      key = key.substr(section.size() + 1);
      if (key.find('.') != std::string::npos) continue;
    } else if (key.find('.') != std::string::npos) {
      continue;
    }
    out += (out.empty() ? "" : ", ") + key;
  }
  return out;
}

// The help lines of every setting, the defaults read from a default-constructed T.
template <typename T>
std::vector<std::string> SettingsHelpLines(const std::vector<Setting<T>>& table) {
  const T defaults{};
  std::vector<std::string> out;
  for (const Setting<T>& s : table) out.push_back(SettingHelpLine(s, ValueJson(s, defaults)));
  return out;
}

}  // namespace twotower

#endif  // TWOTOWER_CORE_SETTINGS_H_
