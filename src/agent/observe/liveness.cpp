#include "agent/observe/liveness.h"

namespace sa::agent::observe {

Liveness::Liveness(std::chrono::milliseconds stale_after, Clock now)
    : stale_after_(stale_after), now_(std::move(now)) {
    if (!now_) now_ = [] { return std::chrono::steady_clock::now(); };
}

size_t Liveness::add(std::string name) {
    std::lock_guard lock(mutex_);
    slots_.push_back({std::move(name), now_()});
    return slots_.size() - 1;
}

void Liveness::beat(size_t slot) {
    const auto now = now_();
    std::lock_guard lock(mutex_);
    if (slot < slots_.size()) slots_[slot].last_beat = now;
}

Liveness::Verdict Liveness::check() const {
    const auto now = now_();
    std::lock_guard lock(mutex_);
    for (const auto& slot : slots_) {
        const auto silent =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - slot.last_beat);
        if (silent > stale_after_) {
            return {false, slot.name + " has not moved for " +
                               std::to_string(silent.count() / 1000) + " s (limit " +
                               std::to_string(stale_after_.count() / 1000) + " s)"};
        }
    }
    return {};
}

}  // namespace sa::agent::observe
