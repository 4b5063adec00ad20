// agent-hub: see src/hub/server/serve.h for what `serve` starts, and
// src/hub/cli/cli.cpp for the commands.
#include <exception>
#include <iostream>

#include "hub/cli/cli.h"

int main(int argc, char** argv) {
    try {
        return sa::hub::cli::run(argc, argv);
    } catch (const std::exception& e) {
        // A broken invariant: report it plainly instead of a bare terminate().
        std::cerr << "agent-hub: internal error: " << e.what() << "\n";
        return 70;
    }
}
