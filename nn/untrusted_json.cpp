#include "nn/untrusted_json.h"

#include <cstdint>
#include <algorithm>
#include <cstdio>

#include "tensor/error.h"

namespace pt::nn {

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (strict: no overlongs, surrogates or code points above
// U+10FFFF), or 0 when it is not one.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return i + k < s.size() ? uint8_t(s[i + k]) : uint8_t(0); };
  const auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xBF) { return byte(k) >= lo && byte(k) <= hi; };
  const uint8_t b = byte(0);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const bool second = b == 0xE0 ? cont(1, 0xA0) : b == 0xED ? cont(1, 0x80, 0x9F) : cont(1);
    return second && cont(2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const bool second = b == 0xF0 ? cont(1, 0x90) : b == 0xF4 ? cont(1, 0x80, 0x8F) : cont(1);
    return second && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json parse_untrusted_json(std::string_view text, const std::string& where, int max_depth,
                                    const nlohmann::json::parser_callback_t& callback) {
  PT_CHECK(json_nesting_depth(text, max_depth) <= max_depth, where, ": JSON nests deeper than ", max_depth,
           " levels (not a file of this kind, or corrupt)");
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    PT_FAIL(where, ": not valid JSON: ", printable(e.what()));
  }
}

std::string printable(std::string_view bytes, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    if (out.size() >= max_bytes) return out + "...";
    const size_t n = utf8_sequence_length(bytes, i);
    const uint8_t b = uint8_t(bytes[i]);
    if (n == 0 || (n == 1 && (b < 0x20 || b == 0x7F))) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", unsigned(b));
      out += hex;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

std::string json_excerpt(const nlohmann::json& value, size_t max_bytes) {
  // Strings inside are valid UTF-8 (the parser checks), but may hold control characters (a newline).
  return printable(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max_bytes);
}

}  // namespace pt::nn
