// Validated INI configuration: files parsed with inih (Debian's libinih), `--set section.key=value`
// overrides, and typed reads that check every value against what is allowed.
//
// Every error is one line that names where the value came from and what is allowed, e.g.
//   configs/opt1.3b.ini:12: [retrain] lr = fast: expected a number
//   configs/opt1.3b.ini:3: unknown section [modle] (allowed: run, model, data, prune, retrain, eval)
//   --set retrain.steps=-1: [retrain] steps = -1: must be in [0, 1000000]
// Unknown sections and keys are errors, found by finish() after the program has read every key it knows.
// Syntax: `[section]`, `key = value`, comments start a line with ';' or '#' (or follow ' ;' inline);
// keys and section names are case-sensitive; a key may appear once per section.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pt::config {

struct IniValue {
  std::string value;
  std::string origin;  // "path:line" or "--set section.key=value"
  bool used = false;
};

class IniConfig {
 public:
  IniConfig() = default;
  // Throws pt::Error: missing/unreadable file, syntax error (with the line), duplicate key.
  static IniConfig from_file(const std::string& path);
  static IniConfig from_string(const std::string& text, const std::string& name);
  // "section.key=value"; the section must be named. Replaces a value from the file.
  void apply_override(const std::string& assignment);

  // Typed reads; a missing key takes the default. Each read key is remembered for resolved() and finish().
  std::string text(const std::string& section, const std::string& key, const std::string& def);
  std::string choice(const std::string& section, const std::string& key, const std::string& def,
                     const std::vector<std::string>& allowed);
  int64_t integer(const std::string& section, const std::string& key, int64_t def, int64_t min, int64_t max);
  double number(const std::string& section, const std::string& key, double def, double min, double max);
  bool boolean(const std::string& section, const std::string& key, bool def);  // true/false/yes/no/on/off/1/0
  // Comma-separated numbers, e.g. "0.1, 0.2, 0.5"; also "a:b:step" ranges ("0.0:0.8:0.1", inclusive); at most
  // kMaxListValues values in all.
  static constexpr size_t kMaxListValues = 1000;
  std::vector<double> number_list(const std::string& section, const std::string& key, const std::string& def,
                                  double min, double max);
  bool has(const std::string& section, const std::string& key) const;
  std::vector<std::string> keys(const std::string& section) const;  // the keys given in a section, in file order

  // Declares the sections a program knows (so an unknown one is reported as such, with the allowed list).
  void declare_sections(const std::vector<std::string>& sections) { sections_ = sections; }
  // Throws for the first unknown section or key (by position in the file).
  void finish() const;

  // The resolved configuration as INI text: every key that was read, with its value (or default), in
  // section order; what checkpoints store and --dry-run prints.
  std::string resolved() const;
  // The same as (section, key, value) entries, in the same order.
  struct Entry {
    std::string section, key, value;
  };
  std::vector<Entry> resolved_entries() const;

  // Throws "ORIGIN: [section] key = value: message" (or "[section] key: message" for a default).
  [[noreturn]] void fail(const std::string& section, const std::string& key, const std::string& message) const;
  const std::string& name() const { return name_; }

 private:
  IniValue* find(const std::string& section, const std::string& key);
  const IniValue* find(const std::string& section, const std::string& key) const;
  void record(const std::string& section, const std::string& key, const std::string& value);

  std::string name_;
  std::map<std::string, std::map<std::string, IniValue>> values_;
  std::map<std::string, std::string> section_origin_;  // first line of each section
  std::vector<std::string> sections_;
  std::vector<Entry> reads_;  // every key read, with its value (or default)
  std::vector<std::pair<std::string, std::string>> order_;  // (section, key) in file order
};

}  // namespace pt::config
