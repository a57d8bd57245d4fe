// Points stderr at a temporary file for the object's lifetime (what the logger writes there);
// Read() returns what was written so far. Not thread-safe; one at a time.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

namespace switchyard::testing {

class CapturedStderr {
 public:
  CapturedStderr() : file_(std::tmpfile()), saved_(dup(STDERR_FILENO)) {
    dup2(fileno(file_), STDERR_FILENO);
  }
  ~CapturedStderr() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    std::fclose(file_);
  }
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;

  std::string Read() {
    std::string out;
    char buf[4096];
    const off_t size = lseek(fileno(file_), 0, SEEK_END);
    for (off_t off = 0; off < size;) {
      const ssize_t n = pread(fileno(file_), buf, sizeof buf, off);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      off += n;
    }
    return out;
  }

 private:
  FILE* file_;
  int saved_;
};

}  // namespace switchyard::testing
