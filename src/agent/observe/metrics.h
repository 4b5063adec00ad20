#pragma once
// A small metrics registry rendered in the Prometheus text exposition
// format 0.0.4: counters and gauges (with labels) and histograms with fixed
// buckets. Families render sorted by name, series sorted by label values.
//
// Thread-safety: registration and render() take the registry lock; updates
// to a Counter/Gauge/Histogram are lock-free (counters, gauges) or take the
// histogram's own lock. References returned by the registry stay valid for
// the registry's lifetime.
// Registering the same name with another type, label names or buckets is a
// programming error and throws std::logic_error.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sa::agent::observe {

// Label name/value pairs, in the family's label-name order.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter final {
  public:
    void inc(double by = 1.0) { value_.fetch_add(by); }
    double value() const { return value_.load(); }

  private:
    std::atomic<double> value_{0.0};
};

class Gauge final {
  public:
    void set(double value) { value_.store(value); }
    void inc(double by = 1.0) { value_.fetch_add(by); }
    double value() const { return value_.load(); }

  private:
    std::atomic<double> value_{0.0};
};

class Histogram final {
  public:
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double value);

    struct Snapshot {
        std::vector<double> upper_bounds;
        std::vector<uint64_t> cumulative;  // per bound, then +Inf last
        double sum = 0;
        uint64_t count = 0;
    };
    Snapshot snapshot() const;

  private:
    mutable std::mutex mutex_;
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // non-cumulative, one per bound plus +Inf
    double sum_ = 0;
    uint64_t count_ = 0;
};

class Registry final {
  public:
    Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
    Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help,
                         const std::vector<double>& upper_bounds, const Labels& labels = {});

    // The whole registry in text format 0.0.4. Collectors run first.
    std::string render() const;

    // A collector refreshes values that live elsewhere (a background
    // component's stats) right before each render; it must not call render().
    // Returns an id for remove_collector(), which the owner calls before the
    // state the collector reads goes away.
    uint64_t add_collector(std::function<void()> collect);
    void remove_collector(uint64_t id);

  private:
    enum class Type { counter, gauge, histogram };
    struct Series {
        Labels labels;
        std::unique_ptr<Counter> counter;
        std::unique_ptr<Gauge> gauge;
        std::unique_ptr<Histogram> histogram;
    };
    struct Family {
        Type type;
        std::string help;
        std::vector<std::string> label_names;
        std::vector<double> buckets;
        std::map<std::vector<std::string>, Series> series;  // keyed by label values
    };
    Series& series(const std::string& name, const std::string& help, Type type,
                   const Labels& labels, const std::vector<double>& buckets);

    mutable std::mutex mutex_;
    std::map<std::string, Family> families_;
    // Own lock: collectors update series, which takes mutex_.
    mutable std::mutex collectors_mutex_;
    std::map<uint64_t, std::function<void()>> collectors_;
    uint64_t next_collector_id_ = 1;
};

// Text-format helpers, exposed for tests.
std::string escape_label_value(const std::string& value);
std::string format_value(double value);

}  // namespace sa::agent::observe
