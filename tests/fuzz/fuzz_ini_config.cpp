// libFuzzer harness: the INI reader (inih under config/ini_config.cpp) and its typed reads.
// Input: INI text, optionally followed by a line "--" and one --set override per line. Every key a section may
// hold is read with each typed reader; any pt::Error is a correct refusal, anything else (a crash, a sanitizer
// report, another exception type) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/ini_config.h"
#include "tensor/error.h"

namespace {

void read_everything(pt::config::IniConfig& ini) {
  for (const char* section : {"run", "model", "data", "a"}) {
    for (const char* key : {"seed", "device", "lr", "sparsities", "flag", "x"}) {
      try { ini.text(section, key, "default"); } catch (const pt::Error&) {}
      try { ini.choice(section, key, "cpu", {"auto", "cpu", "cuda"}); } catch (const pt::Error&) {}
      try { ini.integer(section, key, 0, -1000, 1000000); } catch (const pt::Error&) {}
      try { ini.number(section, key, 0.5, 0.0, 1.0); } catch (const pt::Error&) {}
      try { ini.boolean(section, key, false); } catch (const pt::Error&) {}
      try { ini.number_list(section, key, "0.5", 0.0, 0.99); } catch (const pt::Error&) {}
    }
  }
  ini.declare_sections({"run", "model", "data"});
  try { ini.finish(); } catch (const pt::Error&) {}
  (void)ini.resolved();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find("\n--\n");
  try {
    pt::config::IniConfig ini = pt::config::IniConfig::from_string(input.substr(0, split), "fuzz.ini");
    if (split != std::string::npos) {
      std::string rest = input.substr(split + 4);
      for (size_t pos = 0; pos <= rest.size();) {
        const size_t end = std::min(rest.find('\n', pos), rest.size());
        try { ini.apply_override(rest.substr(pos, end - pos)); } catch (const pt::Error&) {}
        pos = end + 1;
      }
    }
    read_everything(ini);
  } catch (const pt::Error&) {
  }
  return 0;
}
