#pragma once
// libcurl's process-wide initialisation, done once for every egress client
// (curl_global_init is not thread-safe, so it must not race).
namespace sa::agent::egress {

void ensure_curl_global_init();

}  // namespace sa::agent::egress
