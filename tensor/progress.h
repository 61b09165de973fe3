// Progress display for long stages (calibration, pruning, training, evaluation). On a terminal it redraws
// one line with a bar, the rate and the ETA; otherwise (logs, CI) it prints a plain line every 10 % or
// 30 s, so a redirected log stays readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pt {

class Progress {
 public:
  // `unit` names what is counted ("tok", "step", "layer"); total may be 0 when unknown.
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true, std::FILE* out = stderr);
  ~Progress();
  void advance(int64_t n = 1);
  void set_note(const std::string& note);  // extra text after the rate (e.g. "loss 3.21")
  void finish();                           // prints the final line (also done by the destructor)
  double elapsed_seconds() const;

 private:
  void draw(bool final);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t last_plain_decile_ = -1;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace pt
