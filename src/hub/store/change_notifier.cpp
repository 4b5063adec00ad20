#include "hub/store/change_notifier.h"

#include "common/sqlite/database.h"

namespace sa::hub::store {

struct ChangeNotifier::Impl {
    sqlite::Database db;
    std::chrono::milliseconds interval;

    mutable std::mutex mu;
    std::condition_variable changed;     // waiters
    std::condition_variable stop_watch;  // the watcher's sleep
    uint64_t generation = 0;
    bool shut_down = false;
    bool stopping = false;
    std::thread watcher;

    Impl(sqlite::Database d, std::chrono::milliseconds i) : db(std::move(d)), interval(i) {}

    // -1 when the database cannot be read right now (busy, I/O); the next
    // poll tries again.
    int64_t data_version() {
        auto st = db.prepare("PRAGMA data_version");
        if (!st) return -1;
        auto step = st->step();
        if (!step || *step != sqlite::Statement::Step::row) return -1;
        return st->integer(0);
    }

    void bump() {
        {
            std::lock_guard<std::mutex> lock(mu);
            ++generation;
        }
        changed.notify_all();
    }

    // last: the data_version read before start() returned, so that a commit
    // made right after start() is never taken as the baseline.
    void watch(int64_t last) {
        std::unique_lock<std::mutex> lock(mu);
        while (!stopping) {
            stop_watch.wait_for(lock, interval, [&] { return stopping; });
            if (stopping) break;
            lock.unlock();
            int64_t now = data_version();
            if (now != -1 && now != last) {
                last = now;
                bump();
            }
            lock.lock();
        }
    }
};

Result<std::unique_ptr<ChangeNotifier>> ChangeNotifier::start(const std::string& path,
                                                              std::chrono::milliseconds interval) {
    auto db = sqlite::Database::open(path, sqlite::Database::Mode::read_write_create);
    if (!db) return std::unexpected(db.error());
    // The watcher only reads; query_only guards against a future mistake.
    if (auto s = db->exec("PRAGMA query_only = ON"); !s) return std::unexpected(s.error());
    auto impl = std::make_unique<Impl>(std::move(*db), interval);
    Impl* raw = impl.get();
    int64_t initial = raw->data_version();
    impl->watcher = std::thread([raw, initial] { raw->watch(initial); });
    return std::unique_ptr<ChangeNotifier>(new ChangeNotifier(std::move(impl)));
}

ChangeNotifier::ChangeNotifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ChangeNotifier::~ChangeNotifier() {
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->stopping = true;
        impl_->shut_down = true;
    }
    impl_->stop_watch.notify_all();
    impl_->changed.notify_all();
    if (impl_->watcher.joinable()) impl_->watcher.join();
}

uint64_t ChangeNotifier::generation() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->generation;
}

void ChangeNotifier::notify() {
    impl_->bump();
}

bool ChangeNotifier::wait_for_change(uint64_t seen, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->changed.wait_until(lock, deadline,
                              [&] { return impl_->shut_down || impl_->generation != seen; });
    return !impl_->shut_down && impl_->generation != seen;
}

void ChangeNotifier::shutdown() {
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->shut_down = true;
    }
    impl_->changed.notify_all();
}

bool ChangeNotifier::is_shut_down() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->shut_down;
}

}  // namespace sa::hub::store
