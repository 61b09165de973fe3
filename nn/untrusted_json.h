// JSON read from files this program did not write (safetensors headers, config.json, checkpoint attributes).
// nlohmann::json recurses once per nesting level when it prints or compares a value, so a document nested
// 100,000 deep crashes the process in an error message. Here the nesting is counted on the raw bytes first
// (no recursion) and refused beyond a small bound, and whatever an error quotes from the file is made printable:
// invalid UTF-8 and control bytes become \xNN, so a message stays one line of valid UTF-8.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace pt::nn {

inline constexpr int kMaxJsonDepth = 32;  // HF configs nest 3-4 deep, safetensors headers 3

// The deepest nesting of [ and { in `text` (brackets inside strings do not count); stops counting past `limit`.
int json_nesting_depth(std::string_view text, int limit);

// Parses `text`; throws pt::Error starting with `where` when it nests deeper than max_depth or is not valid JSON
// (nlohmann's message, made printable). `callback` is nlohmann's parser callback, or null.
nlohmann::json parse_untrusted_json(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth,
                                    const nlohmann::json::parser_callback_t& callback = nullptr);

// `bytes` with valid UTF-8 kept and every invalid byte or control character written as \xNN, cut to about
// max_bytes with "..." when longer.
std::string printable(std::string_view bytes, size_t max_bytes = 200);

// A short quotation of a parsed value for an error message: its JSON text cut to max_bytes. Only for values that
// came from parse_untrusted_json (their nesting is bounded, so printing them cannot recurse deeply).
std::string json_excerpt(const nlohmann::json& value, size_t max_bytes = 80);

}  // namespace pt::nn
