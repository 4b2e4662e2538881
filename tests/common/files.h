// Whole files in and out, and the folder of the test binary: for tests that
// feed programs files and compare what they wrote.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace gpo::test {

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), std::streamsize(data.size()));
}
inline void write_file(const std::string& path, const std::vector<uint8_t>& data) {
  write_file(path, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

// Where the running binary is: the build puts the helper programs next to it.
inline std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string p(buf, size_t(n > 0 ? n : 0));
  return p.substr(0, p.rfind('/'));
}

}  // namespace gpo::test
