// secure-agent entry point: everything happens in app/ (see cli.cpp and
// commands.cpp for the startup steps).
#include <string_view>

#include "agent/app/cli.h"
#include "agent/worker/worker_main.h"

int main(int argc, char** argv) {
    // `secure-agent worker` is how the supervisor starts a job's worker
    // (fork+exec, channel on descriptor 3): it takes no options and goes
    // straight to the worker, before any CLI or config code runs.
    if (argc == 2 && std::string_view(argv[1]) == "worker") {
        return sa::agent::worker::run_worker(3);
    }
    return sa::agent::app::run_cli(argc, argv);
}
