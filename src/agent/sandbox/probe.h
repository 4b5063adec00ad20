#pragma once
// Which sandbox layers this host gives a job worker, found by applying them
// for real in a short-lived child process (the caller stays unrestricted).
// The agent runs it at startup (strict mode refuses to start when a layer
// is missing, instead of refusing every job later) and `doctor` reports it.
#include "agent/sandbox/sandbox.h"
#include "common/result.h"

namespace sa::agent::sandbox {

// Forks; the child applies `spec` with strict off (so every layer is tried)
// and reports each layer back through a pipe, then exits. Errors: io when
// the child cannot be created, internal when it died or applying failed
// (the message says how).
Result<Report> probe(const Spec& spec);

// "landlock_net (Landlock ABI 3 has no TCP rules), ..." for the layers not
// applied; empty when every layer was.
std::string describe_missing(const Report& report);

}  // namespace sa::agent::sandbox
