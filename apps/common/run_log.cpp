#include "apps/common/run_log.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "tensor/error.h"

namespace pt::app {

RunLog::RunLog(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "a")) {
  PT_CHECK(file_, "log ", path, ": cannot open for appending (", std::strerror(errno), ")");
}

RunLog::~RunLog() {
  if (file_) std::fclose(file_);
}

void RunLog::line(const std::string& text) {
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
  // The script goes through a file, so no shell quoting touches gnuplot's $5.
  const std::string script_path = png + ".gp";
  std::FILE* f = std::fopen(script_path.c_str(), "w");
  if (!f) {
    log.line("warning: cannot write " + script_path + "; no plot");
    return;
  }
  std::fprintf(f,
               "set terminal pngcairo size 900,500 noenhanced\nset output '%s'\nset datafile separator ','\n"
               "set key top right\nset xlabel 'step'\nset ylabel 'training loss'\nset y2label 'test perplexity'\n"
               "set y2tics\nset logscale y2\nset grid\n"
               "plot '%s' every ::1 using 1:2 with lines title 'training loss', \\\n"
               "     '' every ::1 using 1:($5 > 0 ? $5 : 1/0) axes x1y2 with linespoints pt 7 title 'test perplexity'\n",
               png.c_str(), csv.c_str());
  std::fclose(f);
  const std::string cmd = "gnuplot '" + script_path + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) log.line("warning: gnuplot failed to draw " + png);
}

}  // namespace pt::app
