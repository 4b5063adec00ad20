#pragma once
// The files of a hub data directory. One place names them so that `serve`,
// the offline CLI commands and the tests agree.
#include <string>

namespace sa::hub::store {

struct Layout {
    std::string dir;
    std::string ca_cert;       // ca.pem: what agents trust (public)
    std::string ca_key;        // ca.key (0600)
    std::string server_cert;   // server.pem
    std::string server_key;    // server.key (0600)
    std::string token_key;     // token-signing.key (0600)
    std::string token_public;  // token-signing.pub.pem
    std::string job_key;       // job-signing.key (0600)
    std::string job_public;    // job-signing.pub.pem: what customers pin
    // job-signing.previous.pub.pem: the key the last rotation replaced
    std::string job_previous_public;
    // job-signing.next.key (0600) / job-signing.next.pub.pem: a key prepared
    // for the next rotation, handed to customers to pin before it is used
    std::string job_next_key;
    std::string job_next_public;
    std::string database;    // hub.db
    std::string listen_url;  // listen-url: written by `serve` once bound

    static Layout of(const std::string& dir);
};

}  // namespace sa::hub::store
