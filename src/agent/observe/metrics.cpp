#include "agent/observe/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace sa::agent::observe {
namespace {

std::string escape_help(const std::string& help) {
    std::string out;
    for (const char c : help) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string label_block(const Labels& labels, const std::string& extra_name = "",
                        const std::string& extra_value = "") {
    if (labels.empty() && extra_name.empty()) return "";
    std::string out = "{";
    bool first = true;
    for (const auto& [name, value] : labels) {
        out += (first ? "" : ",") + name + "=\"" + escape_label_value(value) + "\"";
        first = false;
    }
    if (!extra_name.empty()) {
        out += (first ? "" : ",") + extra_name + "=\"" + escape_label_value(extra_value) + "\"";
    }
    return out + "}";
}

}  // namespace

std::string escape_label_value(const std::string& value) {
    std::string out;
    for (const char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string format_value(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
        return std::to_string(static_cast<int64_t>(value));
    }
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    return ec == std::errc() ? std::string(buf, end) : "NaN";
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
        std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
        throw std::logic_error("histogram buckets must be strictly increasing");
    }
    counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double value) {
    const size_t bucket = static_cast<size_t>(
        std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
    std::lock_guard lock(mutex_);
    ++counts_[bucket];
    sum_ += value;
    ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
    std::lock_guard lock(mutex_);
    Snapshot out{bounds_, {}, sum_, count_};
    uint64_t running = 0;
    for (const uint64_t n : counts_) {
        running += n;
        out.cumulative.push_back(running);
    }
    return out;
}

Registry::Series& Registry::series(const std::string& name, const std::string& help, Type type,
                                   const Labels& labels, const std::vector<double>& buckets) {
    std::vector<std::string> names;
    std::vector<std::string> values;
    for (const auto& [label, value] : labels) {
        names.push_back(label);
        values.push_back(value);
    }
    auto [it, inserted] = families_.try_emplace(name, Family{type, help, names, buckets, {}});
    Family& family = it->second;
    if (!inserted &&
        (family.type != type || family.label_names != names || family.buckets != buckets)) {
        throw std::logic_error("metric " + name + " registered twice with different shapes");
    }
    auto [sit, created] = family.series.try_emplace(values);
    Series& s = sit->second;
    if (created) {
        s.labels = labels;
        if (type == Type::counter) s.counter = std::make_unique<Counter>();
        if (type == Type::gauge) s.gauge = std::make_unique<Gauge>();
        if (type == Type::histogram) s.histogram = std::make_unique<Histogram>(buckets);
    }
    return s;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mutex_);
    return *series(name, help, Type::counter, labels, {}).counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mutex_);
    return *series(name, help, Type::gauge, labels, {}).gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const std::vector<double>& upper_bounds, const Labels& labels) {
    std::lock_guard lock(mutex_);
    return *series(name, help, Type::histogram, labels, upper_bounds).histogram;
}

uint64_t Registry::add_collector(std::function<void()> collect) {
    std::lock_guard lock(collectors_mutex_);
    const uint64_t id = next_collector_id_++;
    collectors_.emplace(id, std::move(collect));
    return id;
}

void Registry::remove_collector(uint64_t id) {
    std::lock_guard lock(collectors_mutex_);
    collectors_.erase(id);
}

std::string Registry::render() const {
    {
        // Held while collecting so remove_collector() waits for a running one.
        std::lock_guard collecting(collectors_mutex_);
        for (const auto& [id, collect] : collectors_) collect();
    }
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [name, family] : families_) {
        const char* type = family.type == Type::counter ? "counter"
                           : family.type == Type::gauge ? "gauge"
                                                        : "histogram";
        out += "# HELP " + name + " " + escape_help(family.help) + "\n";
        out += "# TYPE " + name + " " + type + "\n";
        for (const auto& [values, s] : family.series) {
            if (s.counter)
                out += name + label_block(s.labels) + " " + format_value(s.counter->value()) + "\n";
            if (s.gauge)
                out += name + label_block(s.labels) + " " + format_value(s.gauge->value()) + "\n";
            if (s.histogram) {
                const auto snap = s.histogram->snapshot();
                for (size_t i = 0; i < snap.upper_bounds.size(); ++i) {
                    out += name + "_bucket" +
                           label_block(s.labels, "le", format_value(snap.upper_bounds[i])) + " " +
                           std::to_string(snap.cumulative[i]) + "\n";
                }
                out += name + "_bucket" + label_block(s.labels, "le", "+Inf") + " " +
                       std::to_string(snap.cumulative.back()) + "\n";
                out += name + "_sum" + label_block(s.labels) + " " + format_value(snap.sum) + "\n";
                out += name + "_count" + label_block(s.labels) + " " + std::to_string(snap.count) +
                       "\n";
            }
        }
    }
    return out;
}

}  // namespace sa::agent::observe
