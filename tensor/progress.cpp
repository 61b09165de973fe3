#include "tensor/progress.h"

#include <unistd.h>

#include <cmath>

namespace pt {

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled, std::FILE* out)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled), out_(out),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {
  tty_ = enabled_ && isatty(fileno(out_));
}

Progress::~Progress() { finish(); }

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::set_note(const std::string& note) { note_ = note; }

void Progress::advance(int64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (since >= 0.1 || done_ == total_) draw(false);
    return;
  }
  int64_t decile = total_ > 0 ? done_ * 10 / total_ : -1;
  if ((total_ > 0 && decile != last_plain_decile_) || since >= 30.0) {
    last_plain_decile_ = decile;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  const double t = elapsed_seconds();
  const double rate = t > 0 ? double(done_) / t : 0.0;
  const double eta = (total_ > 0 && rate > 0) ? double(total_ - done_) / rate : NAN;
  char rate_buf[48];
  if (rate >= 1e6) std::snprintf(rate_buf, sizeof rate_buf, "%.2fM %s/s", rate / 1e6, unit_.c_str());
  else if (rate >= 1e3) std::snprintf(rate_buf, sizeof rate_buf, "%.1fk %s/s", rate / 1e3, unit_.c_str());
  else std::snprintf(rate_buf, sizeof rate_buf, "%.2f %s/s", rate, unit_.c_str());
  std::string counts = total_ > 0 ? std::to_string(done_) + "/" + std::to_string(total_) : std::to_string(done_);
  std::string tail = std::string(rate_buf) + (final ? ", " + format_duration(t) : ", ETA " + format_duration(eta)) +
                     (note_.empty() ? "" : ", " + note_);
  if (tty_) {
    const int width = 24;
    int filled = total_ > 0 ? int(double(width) * double(done_) / double(total_)) : 0;
    std::string bar(size_t(filled), '#');
    bar.resize(width, '.');
    std::fprintf(out_, "\r%s [%s] %s %s  %s\033[K%s", label_.c_str(), bar.c_str(), counts.c_str(), unit_.c_str(),
                 tail.c_str(), final ? "\n" : "");
  } else {
    int pct = total_ > 0 ? int(100 * done_ / total_) : 0;
    std::fprintf(out_, "%s: %s %s (%d%%), %s\n", label_.c_str(), counts.c_str(), unit_.c_str(), pct, tail.c_str());
  }
  std::fflush(out_);
}

}  // namespace pt
