// Faults a test asks for, per client process: the file <control>/<pid> (the client's process id)
// holds "read_errno=N write_errno=N delay_us=N" (any of them, whitespace-separated): each read
// (write) IO of that process's rings completes with -N, and each IO waits delay_us before it runs.
// It is read again for every job, so a test turns faults on and off by writing and removing it;
// jobs of other processes are not touched.
#include <cstdlib>
#include <fstream>
#include <string>

#include "daemon.h"

namespace hf3fs_test {

Faults FaultsFor(pid_t tgid) {
  Faults f;
  if (options().control.empty()) return f;
  std::ifstream in(options().control + "/" + std::to_string(tgid));
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = word.substr(0, eq);
    const long value = std::strtol(word.c_str() + eq + 1, nullptr, 10);
    if (value < 0) continue;
    if (key == "read_errno") f.read_errno = static_cast<int>(value);
    else if (key == "write_errno") f.write_errno = static_cast<int>(value);
    else if (key == "delay_us") f.delay_us = value;
  }
  return f;
}

}  // namespace hf3fs_test
