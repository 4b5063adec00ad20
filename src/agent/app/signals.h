#pragma once
// SIGTERM/SIGINT handling: the handler only sets an atomic flag (the only
// thing a signal handler may safely do). The run loop polls it, and the
// egress layer uses it as its abort flag, so a long poll in flight stops
// within ~100 ms.
#include <atomic>

namespace sa::agent::app {

// Installs the handlers (sigaction) and ignores SIGPIPE. Call once at startup.
void install_signal_handlers();

// Set by SIGTERM or SIGINT; never reset.
const std::atomic<bool>& stop_requested();

}  // namespace sa::agent::app
