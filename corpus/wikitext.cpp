#include "corpus/wikitext.h"

#include <array>
#include <fstream>
#include <sstream>

#include "corpus/tokenizer.h"  // next_utf8_char

namespace pt::corpus {

namespace {

// Published pins (data/SOURCES.md).
constexpr std::array<PublishedPin, 1> kTestPins{{
    {"wiki.test.raw", 1290590, "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08", false, false},
}};
constexpr std::array<PublishedPin, 1> kValidPins{{
    {"wiki.valid.raw", 1146846, "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7", false, false},
}};
constexpr std::array<PublishedPin, 2> kTrainPins{{
    {"wiki.train.raw", 10940747, "6707892fa3788b5ab9ed78ab5ff37d9fe825f6011a2ad4fcd6a6d467f0e7da57", false, false},
    {"wiki.train.tokens.part", 9488736, "188fb9380cf0a9cad7a2221fca9cc241f43aab1f76d6fdbfd8d8902932bc08cc", true, true},
}};

// Python's str.isspace(): the characters str.strip() removes.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Python text mode reads "\r\n" and a lone "\r" as "\n" (universal newlines).
std::string universal_newlines(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      out += text[i];
    } else {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    }
  }
  return out;
}

bool is_blank(std::string_view line) {
  for (std::size_t i = 0; i < line.size();) {
    Utf8Char c = next_utf8_char(line, i);
    if (!is_python_space(c.cp)) return false;
    i += c.len;
  }
  return true;
}

}  // namespace

const char* split_name(WikiTextSplit split) {
  switch (split) {
    case WikiTextSplit::Train: return "train";
    case WikiTextSplit::Valid: return "valid";
    case WikiTextSplit::Test: return "test";
  }
  return "?";
}

std::span<const PublishedPin> published_pins(WikiTextSplit split) {
  switch (split) {
    case WikiTextSplit::Train: return kTrainPins;
    case WikiTextSplit::Valid: return kValidPins;
    case WikiTextSplit::Test: return kTestPins;
  }
  return {};
}

std::string default_wikitext_path(const std::string& data_dir, WikiTextSplit split) {
  switch (split) {
    case WikiTextSplit::Train: return data_dir + "/wikitext-2-tokens/wiki.train.tokens.part";
    case WikiTextSplit::Valid: return data_dir + "/wikitext-2-raw/wiki.valid.raw";
    case WikiTextSplit::Test: return data_dir + "/wikitext-2-raw/wiki.test.raw";
  }
  return {};
}

std::vector<std::string> hf_rows_from_text(std::string_view raw) {
  if (auto bad = find_invalid_utf8(raw))
    throw Error("wikitext: text is not valid UTF-8 at byte offset " + std::to_string(*bad));
  const std::string text = raw.find('\r') == std::string_view::npos ? std::string(raw) : universal_newlines(raw);
  std::vector<std::string> rows;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;  // keep the "\n", as Python's line iteration does
    std::string_view line(text.data() + pos, end - pos);
    rows.emplace_back(is_blank(line) ? std::string() : std::string(line));
    pos = end;
  }
  return rows;
}

std::string join_rows(const std::vector<std::string>& rows, std::string_view separator) {
  std::size_t total = rows.empty() ? 0 : separator.size() * (rows.size() - 1);
  for (const auto& r : rows) total += r.size();
  std::string out;
  out.reserve(total);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i) out += separator;
    out += rows[i];
  }
  return out;
}

std::string sparsegpt_eval_text(const WikiTextFile& file) { return join_rows(file.rows, "\n\n"); }
std::string sparsegpt_train_text(const WikiTextFile& file) { return join_rows(file.rows, " "); }

WikiTextFile read_wikitext_split(const std::string& path, WikiTextSplit split) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(std::string("wikitext: cannot open the ") + split_name(split) + " split file '" + path +
                "' (missing? link the data folder: ln -s /path/to/shared/data data)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("wikitext: read error on '" + path + "'");
  const std::string text = ss.str();

  WikiTextFile f;
  f.path = path;
  f.split = split;
  f.size = text.size();
  f.sha256 = sha256_hex(text);
  for (const PublishedPin& pin : published_pins(split))
    if (pin.size == f.size && f.sha256 == pin.sha256) f.pin = &pin;
  if (!f.pin) {
    std::string expected;
    for (const PublishedPin& pin : published_pins(split))
      expected += std::string(expected.empty() ? "" : " or ") + pin.file + " sha256 " + std::string(pin.sha256, 8) + "...";
    f.warning = std::string("wikitext: ") + split_name(split) + " split '" + path + "' has sha256 " + f.sha256 +
                " (" + std::to_string(f.size) + " B), not the published " + expected +
                ": numbers are then not comparable with published WikiText-2 results";
  } else if (f.pin->tokenized || f.pin->partial) {
    f.note = std::string("wikitext: ") + split_name(split) + " text is " + f.pin->file +
             (f.pin->partial ? " (a prefix of the split" : " (the whole split") +
             (f.pin->tokenized ? ", tokenized: rare words are <unk>)" : ")") +
             ": numbers made with it are not comparable with published WikiText-2 numbers";
  }
  if (auto bad = find_invalid_utf8(text))
    throw Error("wikitext: '" + path + "' is not valid UTF-8 at byte offset " + std::to_string(*bad) +
                " (Python could not read it either): is it a WikiText-2 file?");
  f.rows = hf_rows_from_text(text);
  return f;
}

}  // namespace pt::corpus
