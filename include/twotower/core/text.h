// Text files, read one way: every text input (CSV tables, ids files, MovieLens files) goes
// through TextLineReader, so the same bytes mean the same thing everywhere:
//   - a UTF-8 byte-order mark at the start of the file is dropped (spreadsheet exports);
//   - a line ends at LF, CR LF or a lone CR (classic Mac exports);
//   - spaces and tabs at the end of a line are dropped (they are never data: a CSV field that
//     needs them is quoted), except tabs for a reader of tab-separated rows (Blanks::kKeepTabs),
//     where a trailing tab ends an empty last field and a row that lost its tabs is short;
//   - blank lines (empty after that) are skipped, so a file may end with any number of them.
// A CR inside a quoted CSV field therefore ends the line (CsvField quotes such values, but no
// reader of ours takes them back). Streams the file line by line (a file whose only line ends
// are lone CRs is read as one piece). Not thread-safe per object.
#ifndef TWOTOWER_CORE_TEXT_H_
#define TWOTOWER_CORE_TEXT_H_

#include <cstdint>
#include <fstream>
#include <string>

namespace twotower {

class TextLineReader {
 public:
  enum class Blanks {
    kDropTrailing,  // spaces and tabs at the end of a line are dropped
    kKeepTabs,      // trailing spaces are dropped, tabs kept (tab-separated rows)
  };
  // Throws Error("<path>: cannot open: <reason>") or ("<path>: is a directory ...").
  explicit TextLineReader(std::string path, Blanks blanks = Blanks::kDropTrailing);

  // The next non-blank line, without its line end. Returns false at the end of the file; throws
  // Error("<path>: read failed") on an I/O error.
  bool Next(std::string* line);
  // The next physical line exactly as it is (blank or not, trailing blanks kept; the byte-order
  // mark is still dropped), and in `ending` its line end: "\n", "\r\n", "\r", or "" for a last
  // line without one. For readers of formats in which a line end can be data (CSV's quoted
  // fields). Returns false at the end of the file. Do not mix with Next on one object.
  bool NextRaw(std::string* line, std::string* ending);
  // The 1-based line number of the line last returned (lone CRs count as line ends).
  int64_t line() const { return line_; }
  const std::string& path() const { return path_; }
  // "<path>:<line>", for messages.
  std::string Where() const { return path_ + ":" + std::to_string(line_); }

 private:
  std::string path_;
  Blanks blanks_;
  std::ifstream in_;
  std::string chunk_;     // the rest of a physical line holding lone CRs
  size_t chunk_pos_ = 0;  // where the next line starts in chunk_
  bool in_chunk_ = false;
  bool chunk_had_lf_ = false;  // getline stopped at an LF (not at the end of the file)
  int64_t line_ = 0;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_TEXT_H_
