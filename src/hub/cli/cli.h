#pragma once
// Entry point of the agent-hub command line. Exit codes: 0 success, 1 the
// command failed, 2 usage error.
namespace sa::hub::cli {

int run(int argc, char** argv);

}  // namespace sa::hub::cli
