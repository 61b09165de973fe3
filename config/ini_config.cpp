#include "config/ini_config.h"

#include <ini.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string_view>

#include "tensor/error.h"

namespace pt::config {
namespace {

// inih reads line by line through this reader, so the handler knows the line it is called for.
struct LineSource {
  const std::string* text;
  size_t pos = 0;
  int line = 0;
  std::map<std::string, int> section_lines;  // first [header] line of each section (inih does not report it)
  int too_long_line = 0;                     // a line that does not fit inih's buffer (parsing stops there)
  bool continuation = false;                 // the line just read starts with whitespace (a value continues)
};

char* read_line(char* str, int num, void* stream) {
  auto* src = static_cast<LineSource*>(stream);
  if (src->pos >= src->text->size()) return nullptr;
  const size_t end = src->text->find('\n', src->pos);
  const size_t stop = end == std::string::npos ? src->text->size() : end + 1;
  if (stop - src->pos > size_t(num - 1)) {
    src->too_long_line = src->line + 1;
    return nullptr;
  }
  const size_t n = stop - src->pos;
  std::memcpy(str, src->text->data() + src->pos, n);
  src->continuation = n > 0 && (str[0] == ' ' || str[0] == '\t');
  str[n] = '\0';
  src->pos += n;
  if (n > 0 && str[n - 1] == '\n') ++src->line;
  else if (src->pos >= src->text->size()) ++src->line;  // last line without a newline
  const std::string_view l(str, n);
  const size_t open = l.find_first_not_of(" \t"), close = l.find(']');
  if (open != std::string_view::npos && l[open] == '[' && close != std::string_view::npos && close > open) {
    std::string name(l.substr(open + 1, close - open - 1));
    const size_t a = name.find_first_not_of(" \t"), b = name.find_last_not_of(" \t");
    name = a == std::string::npos ? "" : name.substr(a, b - a + 1);
    src->section_lines.emplace(name, src->line);
  }
  return str;
}

struct ParseState {
  IniConfig* config;
  LineSource* source;
  std::string name;
  std::string error;
  std::map<std::string, std::map<std::string, IniValue>>* values;
  std::map<std::string, std::string>* section_origin;
  std::vector<std::pair<std::string, std::string>>* order;
  std::string last_key;
};

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

}  // namespace

IniConfig IniConfig::from_string(const std::string& text, const std::string& name) {
  // inih reads C strings: a NUL byte would silently cut its line short.
  if (const size_t nul = text.find('\0'); nul != std::string::npos)
    PT_FAIL(name, ":", 1 + std::count(text.begin(), text.begin() + std::ptrdiff_t(nul), '\n'),
            ": NUL byte in the file (an INI file is text; is this a binary file?)");
  IniConfig c;
  c.name_ = name;
  LineSource src{&text, 0, 0, {}, 0, false};
  ParseState st{&c, &src, name, "", &c.values_, &c.section_origin_, &c.order_, ""};
  auto handler = [](void* user, const char* section, const char* key, const char* value) -> int {
    auto* st = static_cast<ParseState*>(user);
    const std::string where = st->name + ":" + std::to_string(st->source->line);
    const std::string sec = section, k = key ? key : "";
    if (!st->section_origin->count(sec)) {
      auto it = st->source->section_lines.find(sec);
      (*st->section_origin)[sec] = it == st->source->section_lines.end() ? where : st->name + ":" + std::to_string(it->second);
    }
    if (!key) return 1;  // a section header alone
    if (sec.empty()) {
      st->error = where + ": key '" + k + "' appears before any [section]";
      return 0;
    }
    auto& keys = (*st->values)[sec];
    if (keys.count(k) && st->source->continuation && st->last_key == sec + "." + k) {
      keys[k].value += " " + trim(value);  // an indented line continues the previous value
      return 1;
    }
    st->last_key = sec + "." + k;
    if (keys.count(k)) {
      st->error = where + ": [" + sec + "] " + k + " is set twice (first at " + keys[k].origin + ")";
      return 0;
    }
    keys[k] = IniValue{trim(value), where};
    st->order->emplace_back(sec, k);
    return 1;
  };
  const int rc = ini_parse_stream(read_line, &src, handler, &st);
  if (!st.error.empty()) PT_FAIL(st.error);
  PT_CHECK(src.too_long_line == 0, name, ":", src.too_long_line, ": line longer than ", INI_MAX_LINE - 2,
           " characters; continue a long value on following lines indented by a space");
  PT_CHECK(rc == 0, name, ":", rc, ": cannot parse this line (expected [section], key = value, or a comment)");
  return c;
}

IniConfig IniConfig::from_file(const std::string& path) {
  // fopen succeeds on a folder and fread then fails: refuse it by name, and check every read.
  std::error_code ec;
  PT_CHECK(!std::filesystem::is_directory(path, ec), "config ", path, ": is a folder, not an INI file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  PT_CHECK(f, "config ", path, ": cannot open (", std::strerror(errno), ")");
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  PT_CHECK(!failed, "config ", path, ": cannot read (", std::strerror(err), ")");
  return from_string(text, path);
}

void IniConfig::apply_override(const std::string& assignment) {
  const size_t eq = assignment.find('='), dot = assignment.find('.');
  PT_CHECK(eq != std::string::npos && dot != std::string::npos && dot < eq,
           "--set ", assignment, ": expected section.key=value");
  const std::string sec = trim(assignment.substr(0, dot)), key = trim(assignment.substr(dot + 1, eq - dot - 1));
  PT_CHECK(!sec.empty() && !key.empty(), "--set ", assignment, ": expected section.key=value");
  const bool existed = values_.count(sec) && values_[sec].count(key);
  values_[sec][key] = IniValue{trim(assignment.substr(eq + 1)), "--set " + assignment};
  if (!section_origin_.count(sec)) section_origin_[sec] = "--set " + assignment;
  if (!existed) order_.emplace_back(sec, key);
}

IniValue* IniConfig::find(const std::string& section, const std::string& key) {
  auto s = values_.find(section);
  if (s == values_.end()) return nullptr;
  auto k = s->second.find(key);
  return k == s->second.end() ? nullptr : &k->second;
}
const IniValue* IniConfig::find(const std::string& section, const std::string& key) const {
  return const_cast<IniConfig*>(this)->find(section, key);
}
bool IniConfig::has(const std::string& section, const std::string& key) const { return find(section, key) != nullptr; }

std::vector<std::string> IniConfig::keys(const std::string& section) const {
  std::vector<std::string> out;
  for (const auto& [sec, key] : order_)
    if (sec == section) out.push_back(key);
  return out;
}

void IniConfig::record(const std::string& section, const std::string& key, const std::string& value) {
  for (auto& r : reads_)
    if (r.section == section && r.key == key) {
      r.value = value;
      return;
    }
  reads_.push_back({section, key, value});
}

void IniConfig::fail(const std::string& section, const std::string& key, const std::string& message) const {
  const IniValue* v = find(section, key);
  if (v) PT_FAIL(v->origin, ": [", section, "] ", key, " = ", v->value, ": ", message);
  PT_FAIL(name_, ": [", section, "] ", key, ": ", message);
}

std::string IniConfig::text(const std::string& section, const std::string& key, const std::string& def) {
  IniValue* v = find(section, key);
  if (v) v->used = true;
  const std::string out = v ? v->value : def;
  record(section, key, out);
  return out;
}

std::string IniConfig::choice(const std::string& section, const std::string& key, const std::string& def,
                              const std::vector<std::string>& allowed) {
  const std::string s = text(section, key, def);
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end())
    fail(section, key, "expected one of: " + join(allowed));
  return s;
}

int64_t IniConfig::integer(const std::string& section, const std::string& key, int64_t def, int64_t min, int64_t max) {
  const std::string s = text(section, key, std::to_string(def));
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) fail(section, key, "expected an integer");
  if (v < min || v > max) fail(section, key, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return v;
}

static std::string format_number(double x) {
  std::ostringstream o;
  o.precision(10);
  o << x;
  return o.str();
}

double IniConfig::number(const std::string& section, const std::string& key, double def, double min, double max) {
  const std::string s = text(section, key, format_number(def));
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) fail(section, key, "expected a number");
  if (v < min || v > max) fail(section, key, "must be in [" + format_number(min) + ", " + format_number(max) + "]");
  return v;
}

bool IniConfig::boolean(const std::string& section, const std::string& key, bool def) {
  std::string s = text(section, key, def ? "true" : "false");
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  fail(section, key, "expected true or false");
}

std::vector<double> IniConfig::number_list(const std::string& section, const std::string& key, const std::string& def,
                                           double min, double max) {
  const std::string s = text(section, key, def);
  std::vector<double> out;
  auto parse = [&](const std::string& item) {
    errno = 0;
    char* end = nullptr;
    const std::string t = trim(item);
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0' || !std::isfinite(v)) fail(section, key, "'" + t + "' is not a number (expected a list like 0.1, 0.5 or a range start:stop:step)");
    return v;
  };
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t c1 = item.find(':');
    if (c1 == std::string::npos) {
      if (out.size() >= kMaxListValues)
        fail(section, key, "lists more than " + std::to_string(kMaxListValues) + " values");
      out.push_back(parse(item));
      continue;
    }
    const size_t c2 = item.find(':', c1 + 1);
    if (c2 == std::string::npos) fail(section, key, "a range needs start:stop:step");
    const double a = parse(item.substr(0, c1)), b = parse(item.substr(c1 + 1, c2 - c1 - 1)),
                 step = parse(item.substr(c2 + 1));
    if (!(step > 0) || b < a) fail(section, key, "a range start:stop:step needs step > 0 and stop >= start");
    // Counted in floating point first: a tiny step would overflow an integer (or allocate gigabytes).
    const double count = std::floor((b - a) / step + 1e-9) + 1;
    if (!(count <= double(kMaxListValues - out.size())))
      fail(section, key, "range " + trim(item) + " has " + (std::isfinite(count) ? format_number(count) : "too many") + " values; at most " +
                             std::to_string(kMaxListValues) + " are allowed (use a larger step)");
    for (int64_t i = 0; i < int64_t(count); ++i) out.push_back(std::round((a + double(i) * step) * 1e12) / 1e12);
  }
  if (out.empty()) fail(section, key, "expected at least one number");
  for (double v : out)
    if (v < min || v > max) fail(section, key, format_number(v) + " is outside [" + format_number(min) + ", " + format_number(max) + "]");
  return out;
}

void IniConfig::finish() const {
  for (const auto& [sec, key] : order_) {
    const bool known_section = sections_.empty() || std::count(sections_.begin(), sections_.end(), sec);
    const IniValue* v = find(sec, key);
    if (!known_section) PT_FAIL(section_origin_.at(sec), ": unknown section [", sec, "] (allowed: ", join(sections_), ")");
    if (!v->used) {
      std::vector<std::string> known;
      for (const auto& r : reads_)
        if (r.section == sec) known.push_back(r.key);
      PT_FAIL(v->origin, ": unknown key '", key, "' in [", sec, "] (allowed: ", join(known), ")");
    }
  }
}

std::vector<IniConfig::Entry> IniConfig::resolved_entries() const {
  std::vector<std::string> sections;
  for (const auto& r : reads_)
    if (std::find(sections.begin(), sections.end(), r.section) == sections.end()) sections.push_back(r.section);
  std::vector<Entry> out;
  for (const auto& sec : sections)
    for (const auto& r : reads_)
      if (r.section == sec) out.push_back(r);
  return out;
}

std::string IniConfig::resolved() const {
  std::string out, section;
  for (const Entry& e : resolved_entries()) {
    if (e.section != section) out += (out.empty() ? "[" : "\n[") + e.section + "]\n";
    section = e.section;
    out += e.key + " = " + e.value + "\n";
  }
  return out;
}

}  // namespace pt::config
