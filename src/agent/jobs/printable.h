#pragma once
// Text from a job (even a verified one: a hub could still send odd names)
// made safe for one log line or message: at most max_chars, anything but
// printable ASCII replaced by '?', "..." when cut.
#include <string>
#include <string_view>

namespace sa::agent::jobs {

inline std::string printable(std::string_view text, size_t max_chars) {
    std::string out;
    for (size_t i = 0; i < text.size() && i < max_chars; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
    }
    if (text.size() > max_chars) out += "...";
    return out;
}

}  // namespace sa::agent::jobs
