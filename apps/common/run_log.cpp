#include "apps/common/run_log.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/atomic_file.h"
#include "tensor/error.h"

namespace pt::app {

RunLog::RunLog(const std::string& path) : path_(path), file_(path.empty() ? nullptr : std::fopen(path.c_str(), "a")) {
  PT_CHECK(file_ || path.empty(), "log ", path, ": cannot open for appending (", std::strerror(errno), ")");
}

RunLog::~RunLog() {
  if (file_) std::fclose(file_);
}

void RunLog::line(const std::string& text) {
  if (!file_) return;
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fprintf(file_, "[%s] %s\n", stamp, text.c_str());
  std::fflush(file_);
}

void plot_loss_curve(const std::string& csv, const std::string& png, RunLog& log) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    log.line("note: gnuplot not found; no " + png + " (install gnuplot-nox, or plot " + csv + ")");
    return;
  }
  // The script goes through a file, so no shell quoting touches gnuplot's $5; gnuplot draws into the
  // temporary of an atomic write, so a complete plot replaces the old one.
  AtomicFile plot(png);
  const std::string script =
      "set terminal pngcairo size 900,500 noenhanced\nset output '" + plot.temp_path() + "'\n"
      "set datafile separator ','\nset key top right\nset xlabel 'step'\nset ylabel 'training loss'\n"
      "set y2label 'test perplexity'\nset y2tics\nset logscale y2\nset grid\n"
      "plot '" + csv + "' every ::1 using 1:2 with lines title 'training loss', \\\n"
      "     '' every ::1 using 1:($5 > 0 ? $5 : 1/0) axes x1y2 with linespoints pt 7 title 'test perplexity'\n";
  const std::string script_path = png + ".gp";
  write_file_atomic(script_path, script);
  const std::string cmd = "gnuplot '" + script_path + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    log.line("warning: gnuplot failed to draw " + png);
    return;
  }
  plot.commit();
}

}  // namespace pt::app
