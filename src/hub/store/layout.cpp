#include "hub/store/layout.h"

namespace sa::hub::store {

Layout Layout::of(const std::string& dir) {
    auto in = [&](const char* name) { return dir + "/" + name; };
    return Layout{
        .dir = dir,
        .ca_cert = in("ca.pem"),
        .ca_key = in("ca.key"),
        .server_cert = in("server.pem"),
        .server_key = in("server.key"),
        .token_key = in("token-signing.key"),
        .token_public = in("token-signing.pub.pem"),
        .job_key = in("job-signing.key"),
        .job_public = in("job-signing.pub.pem"),
        .job_previous_public = in("job-signing.previous.pub.pem"),
        .job_next_key = in("job-signing.next.key"),
        .job_next_public = in("job-signing.next.pub.pem"),
        .database = in("hub.db"),
        .listen_url = in("listen-url"),
    };
}

}  // namespace sa::hub::store
