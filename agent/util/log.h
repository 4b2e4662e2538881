// Leveled logging to stderr. One line per event, prefixed with the level, so
// `journalctl` and test logs read the same.
#pragma once
#include <cstdio>
#include <fmt/format.h>
#include <string_view>

namespace gpo::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

Level level();
void set_level(Level l);
bool parse_level(std::string_view s, Level& out);
void write(Level l, std::string_view msg);

template <typename... A>
void error(fmt::format_string<A...> f, A&&... a) { write(Level::error, fmt::format(f, std::forward<A>(a)...)); }
template <typename... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (level() >= Level::warn) write(Level::warn, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (level() >= Level::info) write(Level::info, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (level() >= Level::debug) write(Level::debug, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace gpo::log
