#include "apps/train_prune/results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/atomic_file.h"
#include "prune/sequential.h"

namespace pt::app {

std::vector<ResultRow> collect_rows(const Plan& plan, StageRunner& runner) {
  std::vector<ResultRow> rows;
  for (const Cell& c : plan.cells) {
    const Arm& arm = plan.arms[c.arm];
    const StageRecord last = runner.ensure(c.stage_key);
    ResultRow r;
    r.arm = arm.label;
    r.method = prune::prune_method_name(arm.method);
    r.schedule = schedule_name(arm.schedule);
    r.scope = train::retrain_scope_name(arm.scope);
    r.target_sparsity = c.sparsity;
    r.measured_sparsity = last.sparsity;
    r.perplexity = last.perplexity;
    r.eval_seconds = last.eval_seconds;
    r.reconstruction_error = NAN;
    r.kernels = last.kernels;
    if (!c.prune_key.empty()) {
      const StageRecord p = runner.ensure(c.prune_key);
      r.prune_seconds = p.op_seconds;
      r.reconstruction_error = p.reconstruction_error;
    }
    if (!c.retrain_key.empty()) {
      const StageRecord t = runner.ensure(c.retrain_key);
      r.retrain_seconds = t.op_seconds;
      r.trained_parameters = t.trained_parameters;
      r.total_parameters = t.total_parameters;
    }
    for (std::string k = c.stage_key; !k.empty(); k = plan.stage(k).parent) {
      const StageRecord st = runner.ensure(k);
      r.total_seconds += st.op_seconds;
      r.peak_host_rss_bytes = std::max(r.peak_host_rss_bytes, st.peak_host_rss_bytes);
      r.peak_device_bytes = std::max(r.peak_device_bytes, st.peak_device_bytes);
    }
    rows.push_back(r);
  }
  return rows;
}

std::string results_table(const Plan& plan, const std::vector<ResultRow>& rows) {
  std::ostringstream o;
  o << "| sparsity |";
  for (const Arm& a : plan.arms) o << " " << a.label << " |";
  o << "\n|---:|";
  for (size_t i = 0; i < plan.arms.size(); ++i) o << "---:|";
  o << "\n";
  std::vector<double> sorted = plan.sparsities;
  std::sort(sorted.begin(), sorted.end());
  for (double s : sorted) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", s);
    o << "| " << buf << " |";
    for (const Arm& a : plan.arms)
      for (const ResultRow& r : rows)
        if (r.arm == a.label && r.target_sparsity == s) {
          std::snprintf(buf, sizeof buf, "%.4f", r.perplexity);
          o << " " << buf << " |";
        }
    o << "\n";
  }
  return o.str();
}

void write_results(const std::string& dir, const Plan& plan, const std::vector<ResultRow>& rows, RunLog& log) {
  std::ostringstream csv;
  csv.precision(10);
  csv << "arm,method,schedule,scope,target_sparsity,measured_sparsity,perplexity,prune_seconds,retrain_seconds,"
         "eval_seconds,total_seconds,trained_parameters,total_parameters,trained_fraction,reconstruction_error,"
         "peak_host_rss_bytes,peak_device_bytes\n";
  nlohmann::json js = nlohmann::json::array();
  for (const ResultRow& r : rows) {
    const double frac = r.total_parameters > 0 ? double(r.trained_parameters) / double(r.total_parameters) : 0.0;
    csv << '"' << r.arm << "\"," << r.method << "," << r.schedule << "," << r.scope << "," << r.target_sparsity << ","
        << r.measured_sparsity << "," << r.perplexity << "," << r.prune_seconds << "," << r.retrain_seconds << ","
        << r.eval_seconds << "," << r.total_seconds << "," << r.trained_parameters << "," << r.total_parameters << ","
        << frac << ",";
    if (std::isfinite(r.reconstruction_error)) csv << r.reconstruction_error;
    csv << "," << r.peak_host_rss_bytes << "," << r.peak_device_bytes << "\n";
    js.push_back({{"arm", r.arm}, {"method", r.method}, {"schedule", r.schedule}, {"scope", r.scope},
                  {"target_sparsity", r.target_sparsity}, {"measured_sparsity", r.measured_sparsity},
                  {"perplexity", r.perplexity}, {"prune_seconds", r.prune_seconds},
                  {"retrain_seconds", r.retrain_seconds}, {"eval_seconds", r.eval_seconds},
                  {"total_seconds", r.total_seconds}, {"trained_parameters", r.trained_parameters},
                  {"total_parameters", r.total_parameters}, {"trained_fraction", frac},
                  {"reconstruction_error", std::isfinite(r.reconstruction_error) ? nlohmann::json(r.reconstruction_error)
                                                                                 : nlohmann::json(nullptr)},
                  {"kernels", r.kernels},
                  {"peak_host_rss_bytes", r.peak_host_rss_bytes}, {"peak_device_bytes", r.peak_device_bytes}});
  }
  write_file_atomic(dir + "/results.csv", csv.str());
  write_file_atomic(dir + "/results.json", js.dump(2) + "\n");
  write_file_atomic(dir + "/results.md", "# Perplexity (WikiText-2 test) by sparsity\n\n" + results_table(plan, rows));

  // One data block per arm (gnuplot's `index`), then a log-scale plot like the paper's Figure 1.
  std::ostringstream dat;
  for (const Arm& a : plan.arms) {
    dat << "# " << a.label << "\n";
    for (const ResultRow& r : rows)
      if (r.arm == a.label) dat << r.target_sparsity << " " << r.perplexity << "\n";
    dat << "\n\n";
  }
  write_file_atomic(dir + "/results.dat", dat.str());
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    log.line("note: gnuplot not found; no results.png (install gnuplot-nox, or plot results.csv)");
    return;
  }
  // Tick labels at round values inside the data's range: a log axis spanning less than a decade would
  // otherwise carry no labels at all.
  double lo = INFINITY, hi = 0;
  for (const ResultRow& r : rows) {
    lo = std::min(lo, r.perplexity);
    hi = std::max(hi, r.perplexity);
  }
  std::vector<double> ticks;
  for (int e = int(std::floor(std::log10(std::max(lo, 1e-300)))); e <= int(std::ceil(std::log10(std::max(hi, 1e-300)))); ++e)
    for (double m : {1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0}) {
      const double t = m * std::pow(10.0, e);
      if (t >= lo / 1.05 && t <= hi * 1.05) ticks.push_back(t);
    }
  while (ticks.size() > 8) {
    std::vector<double> half;
    for (size_t i = 0; i < ticks.size(); i += 2) half.push_back(ticks[i]);
    ticks = half;
  }
  AtomicFile png(dir + "/results.png");  // gnuplot draws into the temporary; a complete plot replaces the old one
  std::ostringstream gp;
  gp << "set terminal pngcairo size 1100,560 noenhanced\nset output '" << png.temp_path() << "'\n"
     << "set logscale y\nset autoscale yfix\nset offsets 0, 0, graph 0.05, graph 0.05\nset grid\n"
     << "set key outside right top\nset xlabel 'sparsity'\nset ylabel 'perplexity (WikiText-2 test, log scale)'\n";
  if (ticks.size() >= 2) {
    gp << "set ytics (";
    for (size_t i = 0; i < ticks.size(); ++i) gp << (i ? ", " : "") << ticks[i];
    gp << ")\n";
  }
  gp
     << "plot ";
  for (size_t i = 0; i < plan.arms.size(); ++i)
    gp << (i ? ", \\\n     " : "") << "'" << dir << "/results.dat' index " << i << " using 1:2 with linespoints lw 2 pt 7 title '"
       << plan.arms[i].label << "'";
  gp << "\n";
  write_file_atomic(dir + "/results.gp", gp.str());
  if (std::system(("gnuplot '" + dir + "/results.gp' 2>&1").c_str()) != 0) {
    log.line("warning: gnuplot failed on results.gp");
    return;
  }
  png.commit();
}

}  // namespace pt::app
