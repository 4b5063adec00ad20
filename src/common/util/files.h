#pragma once
// File helpers. write_file_atomic never leaves a half-written file behind:
// it writes a temporary file in the same directory, fsyncs it, renames it
// over the target and fsyncs the directory.
#include <string>
#include <string_view>

#include "common/result.h"

namespace sa::util {

Result<std::string> read_file(const std::string& path);
Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode);
// mkdir -p with the given mode for directories it creates.
Status make_dirs(const std::string& path, unsigned mode);

}  // namespace sa::util
