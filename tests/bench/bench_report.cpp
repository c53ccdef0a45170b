// Statistics and reports for scripts/bench.sh.
//
//   bench_report import-gbench FILE   Google Benchmark JSON -> sample lines on stdout
//   bench_report write RAW OUTDIR [PEERS]
//                                     RAW (tab-separated lines, below) -> OUTDIR/results.json
//                                     and OUTDIR/results.md; PEERS (peer_figures.json): what
//                                     peers publish, each set next to the measurement it names
//   bench_report argv                 a JSON array of strings on stdin (`qvm up --dry-run
//                                     --json`) -> the strings, each ended by NUL, for mapfile -d''
//   bench_report qemu-start JOURNAL   a VM's events.jsonl -> the microseconds from the last
//                                     QVM_START (its spawned_at_us) to the RESUME after it
//                                     (QEMU's qemu_time): QEMU's own share of the last start
//
// RAW lines, tab-separated:
//   machine KEY VALUE            shown in the machine table (CPU, kernel, QEMU, ...)
//   config  KEY VALUE            how the run was configured (REPEAT, QUICK, commit)
//   sample  KEY VALUE UNIT       one measurement; UNIT is ns, us, ms, s, kB, B or MiB
//   spec    ID TITLE UNIT QVM_KEY BASELINE_KEY TARGET BASELINE_LABEL [PAIRED]
//                                one table row: the qvm samples against the baseline
//                                samples ("-": none); TARGET is ratio<=X, ratio<X,
//                                value<=X, value<X or "-"; values are in UNIT. PAIRED
//                                "paired": the i-th qvm and baseline samples come from the
//                                same round, so the median of their ratios is reported too
//   note    TEXT                 printed under the table
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace qvm::bench {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::string::size_type start = 0;
  for (;;) {
    auto tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

// Size of one UNIT in the base unit of its kind (nanoseconds or bytes).
double unit_scale(const std::string& unit) {
  static const std::map<std::string, double> scales = {
      {"ns", 1.0}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"B", 1.0}, {"kB", 1024.0}, {"MiB", 1048576.0}};
  auto it = scales.find(unit);
  if (it == scales.end()) fail("unknown unit \"" + unit + "\"");
  return it->second;
}

bool is_time(const std::string& unit) { return unit == "ns" || unit == "us" || unit == "ms" || unit == "s"; }

struct Sample {
  double value;  // in its unit
  std::string unit;
};

struct Spec {
  std::string id, title, unit, qvm_key, baseline_key, target, baseline_label;
  bool paired = false;
};

struct Raw {
  std::vector<std::pair<std::string, std::string>> machine, config;
  std::map<std::string, std::vector<Sample>> samples;
  std::vector<Spec> specs;
  std::vector<std::string> notes;
};

Raw read_raw(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  Raw raw;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty()) continue;
    auto f = split_tabs(line);
    auto need = [&](std::size_t count) {
      if (f.size() < count) fail(path + ":" + std::to_string(number) + ": expected " + std::to_string(count) + " fields");
    };
    if (f[0] == "machine" || f[0] == "config") {
      need(3);
      (f[0] == "machine" ? raw.machine : raw.config).emplace_back(f[1], f[2]);
    } else if (f[0] == "sample") {
      need(4);
      unit_scale(f[3]);
      raw.samples[f[1]].push_back({std::stod(f[2]), f[3]});
    } else if (f[0] == "spec") {
      need(8);
      raw.specs.push_back({f[1], f[2], f[3], f[4], f[5], f[6], f[7], f.size() > 8 && f[8] == "paired"});
    } else if (f[0] == "note") {
      need(2);
      raw.notes.push_back(f[1]);
    } else {
      fail(path + ":" + std::to_string(number) + ": unknown record \"" + f[0] + "\"");
    }
  }
  return raw;
}

struct Stats {
  std::vector<double> values;    // sorted, in the row's unit
  std::vector<double> in_order;  // the same, in the order they were recorded
  double quantile(double q) const {
    const double rank = q * static_cast<double>(values.size() - 1);
    const auto low = static_cast<std::size_t>(std::floor(rank));
    const auto high = std::min(low + 1, values.size() - 1);
    return values[low] + (rank - static_cast<double>(low)) * (values[high] - values[low]);
  }
  double median() const { return quantile(0.5); }
  double mean() const {
    double sum = 0;
    for (double v : values) sum += v;
    return sum / static_cast<double>(values.size());
  }
};

std::optional<Stats> stats_for(const Raw& raw, const std::string& key, const std::string& unit) {
  auto it = raw.samples.find(key);
  if (key == "-" || it == raw.samples.end() || it->second.empty()) return std::nullopt;
  Stats stats;
  for (const auto& sample : it->second) {
    if (is_time(sample.unit) != is_time(unit)) fail(key + ": " + sample.unit + " cannot be shown in " + unit);
    stats.values.push_back(sample.value * unit_scale(sample.unit) / unit_scale(unit));
  }
  stats.in_order = stats.values;
  std::sort(stats.values.begin(), stats.values.end());
  return stats;
}

std::string number(double value) {
  char text[64];
  const double magnitude = std::fabs(value);
  const int decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3;
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string spread_text(const Stats& stats) {
  // Few runs: the extremes are the honest spread; many: p10-p90 ignores lone outliers.
  if (stats.values.size() < 20) {
    return "min–max " + number(stats.values.front()) + "–" + number(stats.values.back());
  }
  return "p10–p90 " + number(stats.quantile(0.1)) + "–" + number(stats.quantile(0.9));
}

json stats_json(const Stats& stats) {
  return {{"median", stats.median()}, {"p10", stats.quantile(0.1)}, {"p90", stats.quantile(0.9)},
          {"p99", stats.quantile(0.99)}, {"min", stats.values.front()}, {"max", stats.values.back()},
          {"mean", stats.mean()}, {"n", stats.values.size()}, {"samples", stats.in_order}};
}

struct Target {
  std::string kind;  // "ratio" or "value"
  std::string op;    // "<=" or "<"
  double limit = 0;
};

std::optional<Target> parse_target(const std::string& text) {
  if (text == "-") return std::nullopt;
  for (const char* kind : {"ratio", "value"}) {
    const std::string prefix = kind;
    if (text.rfind(prefix, 0) != 0) continue;
    std::string rest = text.substr(prefix.size());
    for (const char* op : {"<=", "<"}) {
      if (rest.rfind(op, 0) == 0) return Target{kind, op, std::stod(rest.substr(std::string(op).size()))};
    }
  }
  fail("bad target \"" + text + "\"");
}

std::string target_text(const std::optional<Target>& target, const std::string& unit) {
  if (!target) return "—";
  const std::string op = target->op == "<=" ? "≤" : "<";
  if (target->kind == "ratio") return "ratio " + op + " " + number(target->limit);
  return op + " " + number(target->limit) + " " + unit;
}

struct Row {
  Spec spec;
  std::optional<Stats> qvm, baseline;
  std::optional<double> ratio;
  std::optional<double> paired_ratio;  // median of per-round ratios (paired specs)
  std::optional<Target> target;
  std::string met;  // yes, no, "—" (no target), "no data"
};

Row evaluate(const Raw& raw, const Spec& spec) {
  Row row{spec, stats_for(raw, spec.qvm_key, spec.unit), stats_for(raw, spec.baseline_key, spec.unit),
          std::nullopt, std::nullopt, parse_target(spec.target), "—"};
  if (row.qvm && row.baseline && row.baseline->median() != 0) row.ratio = row.qvm->median() / row.baseline->median();
  // Round by round, both sides saw the same moment of a shared machine's load.
  if (spec.paired && row.qvm && row.baseline && row.qvm->in_order.size() == row.baseline->in_order.size()) {
    Stats ratios;
    for (std::size_t i = 0; i < row.qvm->in_order.size(); ++i) {
      if (row.baseline->in_order[i] != 0) ratios.values.push_back(row.qvm->in_order[i] / row.baseline->in_order[i]);
    }
    std::sort(ratios.values.begin(), ratios.values.end());
    if (!ratios.values.empty()) row.paired_ratio = ratios.median();
  }
  if (!row.target) return row;
  // Plain values rather than an optional<double>: GCC 12 at -Os warns that one may be
  // read uninitialized.
  const bool have = row.target->kind == "ratio" ? row.ratio.has_value() : row.qvm.has_value();
  const double measured = !have ? 0.0 : row.target->kind == "ratio" ? *row.ratio : row.qvm->median();
  if (!have) {
    row.met = "no data";
  } else {
    const bool ok = row.target->op == "<=" ? measured <= row.target->limit : measured < row.target->limit;
    row.met = ok ? "yes" : "no";
  }
  return row;
}

// What peers publish (tests/bench/peer_figures.json), each next to the measurement of this
// run it is closest to. Their conditions differ, which every entry says.
struct Peer {
  std::string peer, figure, conditions, source, compare, difference;
};

std::vector<Peer> read_peers(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  std::vector<Peer> peers;
  for (const auto& entry : json::parse(in)) {
    peers.push_back({entry.at("peer").get<std::string>(), entry.at("figure").get<std::string>(),
                     entry.at("conditions").get<std::string>(), entry.at("source").get<std::string>(),
                     entry.at("compare").get<std::string>(), entry.at("difference").get<std::string>()});
  }
  return peers;
}

void write_outputs(const Raw& raw, const std::string& outdir, const std::vector<Peer>& peers) {
  std::vector<Row> rows;
  for (const auto& spec : raw.specs) rows.push_back(evaluate(raw, spec));
  // This run's value for a peer's figure: the median of the measurement it names, if run.
  const auto measured = [&rows](const Peer& peer) -> std::optional<std::string> {
    for (const auto& row : rows) {
      if (row.spec.id == peer.compare && row.qvm) {
        return row.spec.title + ": " + number(row.qvm->median()) + " " + row.spec.unit;
      }
    }
    return std::nullopt;
  };

  json doc;
  doc["machine"] = json::object();
  for (const auto& [key, value] : raw.machine) doc["machine"][key] = value;
  doc["config"] = json::object();
  for (const auto& [key, value] : raw.config) doc["config"][key] = value;
  doc["measurements"] = json::array();
  for (const auto& row : rows) {
    json entry = {{"id", row.spec.id}, {"title", row.spec.title}, {"unit", row.spec.unit},
                  {"baseline_label", row.spec.baseline_label == "-" ? json(nullptr) : json(row.spec.baseline_label)},
                  {"qvm", row.qvm ? stats_json(*row.qvm) : json(nullptr)},
                  {"baseline", row.baseline ? stats_json(*row.baseline) : json(nullptr)},
                  {"ratio", row.ratio ? json(*row.ratio) : json(nullptr)},
                  {"paired_ratio", row.paired_ratio ? json(*row.paired_ratio) : json(nullptr)},
                  {"target", row.target ? json{{"kind", row.target->kind}, {"op", row.target->op}, {"limit", row.target->limit}}
                                        : json(nullptr)},
                  {"met", row.met == "yes" ? json(true) : row.met == "no" ? json(false) : json(nullptr)}};
    doc["measurements"].push_back(entry);
  }
  doc["notes"] = raw.notes;
  doc["peers"] = json::array();
  for (const auto& peer : peers) {
    const auto value = measured(peer);
    doc["peers"].push_back({{"peer", peer.peer}, {"figure", peer.figure}, {"conditions", peer.conditions},
                            {"source", peer.source}, {"compare", peer.compare},
                            {"qvm", value ? json(*value) : json(nullptr)}, {"difference", peer.difference}});
  }
  std::ofstream(outdir + "/results.json") << doc.dump(2) << "\n";

  std::ostringstream md;
  md << "# qvm benchmark results\n\n";
  md << "| machine | |\n|---|---|\n";
  for (const auto& [key, value] : raw.machine) md << "| " << key << " | " << value << " |\n";
  for (const auto& [key, value] : raw.config) md << "| " << key << " | " << value << " |\n";
  md << "\n| measurement | qvm median | baseline median | ratio | target | met | spread (qvm; baseline) | n (qvm/baseline) |\n";
  md << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& row : rows) {
    const std::string& unit = row.spec.unit;
    std::string title = row.spec.title;
    if (row.spec.baseline_label != "-") title += " *(baseline: " + row.spec.baseline_label + ")*";
    md << "| " << title << " | " << (row.qvm ? number(row.qvm->median()) + " " + unit : "n/a") << " | "
       << (row.baseline ? number(row.baseline->median()) + " " + unit : "—") << " | "
       << (row.ratio ? number(*row.ratio) : "—") << " | " << target_text(row.target, unit) << " | " << row.met
       << " | " << (row.qvm ? spread_text(*row.qvm) : "—");
    if (row.baseline) md << "; " << spread_text(*row.baseline);
    md << " | " << (row.qvm ? std::to_string(row.qvm->values.size()) : "0");
    if (row.baseline) md << "/" << row.baseline->values.size();
    md << " |\n";
  }
  md << "\nratio = qvm median / baseline median.";
  std::string paired;
  for (const auto& row : rows) {
    if (row.paired_ratio) paired += " " + row.spec.id + " " + number(*row.paired_ratio) + ";";
  }
  if (!paired.empty()) md << " Median of the per-round ratios (qvm and baseline of the same round):" << paired;
  md << "\n";
  if (!raw.notes.empty()) {
    md << "\n";
    for (const auto& note : raw.notes) md << "- " << note << "\n";
  }
  if (!peers.empty()) {
    md << "\n## What peers publish, next to this run\n\n";
    md << "| peer | published figure | their conditions | qvm in this run | how the two differ | source |\n";
    md << "|---|---|---|---|---|---|\n";
    for (const auto& peer : peers) {
      md << "| " << peer.peer << " | " << peer.figure << " | " << peer.conditions << " | "
         << measured(peer).value_or("not measured in this run") << " | " << peer.difference << " | "
         << peer.source << " |\n";
    }
  }
  std::ofstream(outdir + "/results.md") << md.str();
}

// Google Benchmark's JSON: one sample per repetition of each benchmark.
void import_gbench(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  const json doc = json::parse(in);
  for (const auto& entry : doc.at("benchmarks")) {
    if (entry.value("run_type", "iteration") != "iteration") continue;
    std::cout << "sample\targv." << entry.at("run_name").get<std::string>() << "\t"
              << entry.at("real_time").get<double>() << "\t" << entry.at("time_unit").get<std::string>() << "\n";
  }
}

// `qvm up --dry-run --json` prints the argv as a JSON array; bash reads NUL-separated words.
void json_argv_to_nul() {
  const json words = json::parse(std::cin);
  for (const auto& word : words) std::cout << word.get<std::string>() << '\0';
}

// The last start in a journal: QEMU spawned (the supervisor's clock) to the guest CPUs
// resumed (QEMU's clock; both are the realtime clock).
void qemu_start(const std::string& journal) {
  std::ifstream in(journal);
  if (!in) throw std::runtime_error("cannot read " + journal);
  long long spawned = -1;
  long long resumed = -1;
  for (std::string line; std::getline(in, line);) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    if (!entry.is_object()) continue;
    const std::string event = entry.value("event", "");
    if (event == "QVM_START" && entry["data"].contains("spawned_at_us")) {
      spawned = entry["data"]["spawned_at_us"].get<long long>();
      resumed = -1;
    } else if (event == "RESUME" && spawned >= 0 && resumed < 0 && entry.contains("qemu_time")) {
      const auto& time = entry["qemu_time"];
      resumed = time.at("seconds").get<long long>() * 1000000 + time.at("microseconds").get<long long>();
    }
  }
  if (spawned < 0 || resumed < 0) throw std::runtime_error(journal + ": no QVM_START followed by RESUME");
  std::cout << (resumed - spawned) << "\n";
}

int run(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "argv" && argc == 2) {
    json_argv_to_nul();
    return 0;
  }
  if (command == "qemu-start" && argc == 3) {
    qemu_start(argv[2]);
    return 0;
  }
  if (command == "import-gbench" && argc == 3) {
    import_gbench(argv[2]);
    return 0;
  }
  if (command == "write" && (argc == 4 || argc == 5)) {
    write_outputs(read_raw(argv[2]), argv[3], argc == 5 ? read_peers(argv[4]) : std::vector<Peer>{});
    return 0;
  }
  std::cerr << "usage: bench_report import-gbench FILE | write RAW OUTDIR [PEERS.json] | argv | qemu-start JOURNAL\n";
  return 2;
}

}  // namespace
}  // namespace qvm::bench

int main(int argc, char** argv) {
  try {
    return qvm::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_report: " << e.what() << "\n";
    return 1;
  }
}
