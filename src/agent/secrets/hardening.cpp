#include "agent/secrets/hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace sa::agent::secrets {

Status harden_process() {
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        return fail(ErrorCode::internal,
                    std::string("prctl(PR_SET_DUMPABLE, 0) failed: ") + std::strerror(errno));
    }
    const rlimit no_core{0, 0};
    if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
        return fail(ErrorCode::internal,
                    std::string("setrlimit(RLIMIT_CORE, 0) failed: ") + std::strerror(errno));
    }
    return {};
}

}  // namespace sa::agent::secrets
