#include "agent/app/signals.h"

#include <csignal>

namespace sa::agent::app {
namespace {

// The one process-wide mutable: a signal handler has no other way to talk.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "needed for use in a signal handler");

extern "C" void on_stop_signal(int) {
    g_stop.store(true);
}

}  // namespace

void install_signal_handlers() {
    struct sigaction action {};
    action.sa_handler = &on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: interrupted waits return promptly
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);

    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, nullptr);
}

const std::atomic<bool>& stop_requested() {
    return g_stop;
}

}  // namespace sa::agent::app
