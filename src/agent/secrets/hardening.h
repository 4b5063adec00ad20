#pragma once
// Process hardening that protects secrets held in memory: called first thing
// in `secure-agent run`, before any secret is read.
#include "common/result.h"

namespace sa::agent::secrets {

// Makes the process non-dumpable (PR_SET_DUMPABLE 0: no core dumps, no
// ptrace attach by same-uid processes, /proc/PID/mem unreadable) and sets
// RLIMIT_CORE to 0 (soft and hard). Errors: internal naming the failed call.
Status harden_process();

}  // namespace sa::agent::secrets
