#include "hub/ingest/chunk_stager.h"

#include <limits>

namespace sa::hub::ingest {

std::vector<PreparedRecord> prepare_records(std::vector<metadata::Record> records) {
    std::vector<PreparedRecord> out;
    out.reserve(records.size());
    for (auto& r : records) {
        std::string text = metadata::serialize(r);
        std::string print = metadata::fingerprint(r);
        out.push_back(PreparedRecord{std::move(r), std::move(text), std::move(print)});
    }
    return out;
}

Result<std::vector<PreparedRecord>> prepare_chunk(std::string_view ndjson) {
    auto records = metadata::parse_chunk(ndjson);
    if (!records) return std::unexpected(records.error());
    return prepare_records(std::move(*records));
}

ChunkStager::ChunkStager() : ChunkStager(Options{}) {}

ChunkStager::ChunkStager(Options options) : options_(options) {
    worker_ = std::thread([this] { run(); });
}

ChunkStager::~ChunkStager() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_ready_.notify_all();
    worker_.join();
}

void ChunkStager::erase_locked(std::map<Key, Entry>::iterator it) {
    stats_.staged_bytes -= it->second.charge;
    entries_.erase(it);
    stats_.entries = static_cast<int64_t>(entries_.size());
}

void ChunkStager::expire_locked(std::chrono::steady_clock::time_point now) {
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (now - it->second.submitted > options_.max_age) {
            ++stats_.expired;
            auto gone = it++;
            erase_locked(gone);
        } else {
            ++it;
        }
    }
    // Waiters on an expired entry find it gone and parse themselves.
    parsed_.notify_all();
}

bool ChunkStager::submit(const std::string& job_id, int64_t seq, const std::string& sha256_hex,
                         std::string body) {
    const auto now = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    expire_locked(now);
    Key key{job_id, seq};
    if (auto it = entries_.find(key); it != entries_.end()) {
        if (it->second.sha256 == sha256_hex) return true;
        erase_locked(it);  // another digest: the old parse must never be used
    }
    const auto charge = static_cast<int64_t>(body.size());
    if (stats_.staged_bytes + charge > options_.max_staged_bytes) {
        ++stats_.refused;
        return false;
    }
    Entry entry;
    entry.sha256 = sha256_hex;
    entry.body = std::move(body);
    entry.charge = charge;
    entry.submitted = now;
    entry.generation = next_generation_++;
    queue_.emplace_back(key, entry.generation);
    entries_.emplace(std::move(key), std::move(entry));
    stats_.staged_bytes += charge;
    stats_.entries = static_cast<int64_t>(entries_.size());
    lock.unlock();
    work_ready_.notify_one();
    return true;
}

std::optional<Result<std::vector<PreparedRecord>>> ChunkStager::take(
    const std::string& job_id, int64_t seq, const std::string& sha256_hex) {
    std::unique_lock lock(mutex_);
    const Key key{job_id, seq};
    for (;;) {
        auto it = entries_.find(key);
        if (it == entries_.end() || it->second.sha256 != sha256_hex) return std::nullopt;
        Entry& entry = it->second;
        if (entry.state == State::parsed) {
            auto result = std::move(entry.result);
            erase_locked(it);
            return result;
        }
        if (entry.state == State::queued) {
            // Not started: parse it here rather than wait for the queue.
            std::string body = std::move(entry.body);
            erase_locked(it);  // its queue item finds no entry and is skipped
            lock.unlock();
            return prepare_chunk(body);
        }
        parsed_.wait(lock);  // parsing: the entry changes state or goes away
    }
}

void ChunkStager::drop(const std::string& job_id) {
    std::lock_guard lock(mutex_);
    auto it = entries_.lower_bound(Key{job_id, std::numeric_limits<int64_t>::min()});
    while (it != entries_.end() && it->first.first == job_id) {
        auto gone = it++;
        erase_locked(gone);
    }
    parsed_.notify_all();
}

ChunkStager::Stats ChunkStager::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

void ChunkStager::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        auto [key, generation] = std::move(queue_.front());
        queue_.pop_front();
        auto it = entries_.find(key);
        if (it == entries_.end() || it->second.generation != generation ||
            it->second.state != State::queued) {
            continue;  // taken, dropped or replaced meanwhile
        }
        it->second.state = State::parsing;
        std::string body = std::move(it->second.body);
        lock.unlock();
        auto result = prepare_chunk(body);
        body.clear();
        body.shrink_to_fit();
        lock.lock();
        it = entries_.find(key);
        if (it != entries_.end() && it->second.generation == generation) {
            it->second.result = std::move(result);
            it->second.state = State::parsed;
        }
        parsed_.notify_all();
    }
}

}  // namespace sa::hub::ingest
