#include "twotower/core/text.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "twotower/core/error.h"

namespace twotower {

TextLineReader::TextLineReader(std::string path, Blanks blanks)
    : path_(std::move(path)), blanks_(blanks) {
  std::error_code ec;
  if (std::filesystem::is_directory(path_, ec)) {
    throw Error(path_ + ": is a directory, expected a text file");
  }
  in_.open(path_, std::ios::binary);
  if (!in_) ThrowCannotOpen(path_, errno);
}

bool TextLineReader::Next(std::string* line) {
  while (true) {
    if (!in_chunk_) {
      if (!std::getline(in_, chunk_)) {
        if (in_.bad()) throw Error(path_ + ": read failed");
        return false;
      }
      if (line_ == 0 && chunk_.rfind("\xEF\xBB\xBF", 0) == 0) chunk_.erase(0, 3);
      chunk_pos_ = 0;
      in_chunk_ = true;
    }
    // Within what getline returned (up to an LF), a CR ends a line: "a\r" (CR LF) or "a\rb".
    const size_t cr = chunk_.find('\r', chunk_pos_);
    size_t end = cr == std::string::npos ? chunk_.size() : cr;
    line->assign(chunk_, chunk_pos_, end - chunk_pos_);
    ++line_;
    if (cr == std::string::npos || cr + 1 == chunk_.size()) {
      in_chunk_ = false;  // the physical line is used up (a CR right before the LF is CR LF)
    } else {
      chunk_pos_ = cr + 1;
    }
    size_t keep = line->size();
    while (keep > 0 && ((*line)[keep - 1] == ' ' || (*line)[keep - 1] == '\t')) --keep;
    if (keep == 0) continue;  // blank
    if (blanks_ == Blanks::kKeepTabs) {
      keep = line->size();
      while ((*line)[keep - 1] == ' ') --keep;  // stops at the tab or text that made it not blank
    }
    line->resize(keep);
    return true;
  }
}

bool TextLineReader::NextRaw(std::string* line, std::string* ending) {
  if (!in_chunk_) {
    if (!std::getline(in_, chunk_)) {
      if (in_.bad()) throw Error(path_ + ": read failed");
      return false;
    }
    chunk_had_lf_ = !in_.eof();
    if (line_ == 0 && chunk_.rfind("\xEF\xBB\xBF", 0) == 0) chunk_.erase(0, 3);
    chunk_pos_ = 0;
    in_chunk_ = true;
  }
  const size_t cr = chunk_.find('\r', chunk_pos_);
  const size_t end = cr == std::string::npos ? chunk_.size() : cr;
  line->assign(chunk_, chunk_pos_, end - chunk_pos_);
  ++line_;
  if (cr == std::string::npos) {
    *ending = chunk_had_lf_ ? "\n" : "";
    in_chunk_ = false;
  } else if (cr + 1 == chunk_.size()) {
    *ending = chunk_had_lf_ ? "\r\n" : "\r";
    in_chunk_ = false;
  } else {
    *ending = "\r";
    chunk_pos_ = cr + 1;
  }
  return true;
}

}  // namespace twotower
