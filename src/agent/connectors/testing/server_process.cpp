#include "agent/connectors/testing/server_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>

#include "common/util/unique_fd.h"

namespace sa::agent::connectors::testing {

std::string shell_quote(const std::string& path) {
    return "'" + path + "'";
}

Status run_command(const std::string& command) {
    const int rc = std::system(command.c_str());
    if (rc != 0) {
        return fail(ErrorCode::internal, "command failed (" + std::to_string(rc) + "): " + command);
    }
    return {};
}

Result<uint16_t> free_loopback_port() {
    util::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return fail(ErrorCode::io, "socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return fail(ErrorCode::io, "cannot find a free port");
    }
    return ntohs(addr.sin_port);
}

}  // namespace sa::agent::connectors::testing
