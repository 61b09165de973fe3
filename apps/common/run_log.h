// A run's log: every line goes to stderr and is appended to the run's log file; plus the loss-curve plot.
#pragma once
#include <cstdio>
#include <string>

namespace pt::app {

class RunLog {
 public:
  // Appends (a resumed run continues the same log). An empty path makes a silent log: the ranks other than 0 of
  // a multi-process run (rank 0 speaks for all of them).
  explicit RunLog(const std::string& path);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
  void line(const std::string& text);  // "[2026-11-23 10:04:05] text"
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// loss.csv (step,loss,...) -> PNG with gnuplot when it is installed; otherwise a note in the log.
void plot_loss_curve(const std::string& csv, const std::string& png, RunLog& log);

}  // namespace pt::app
