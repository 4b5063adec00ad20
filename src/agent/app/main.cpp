// secure-agent entry point: everything happens in app/ (see cli.cpp and
// commands.cpp for the startup steps).
#include "agent/app/cli.h"

int main(int argc, char** argv) {
    return sa::agent::app::run_cli(argc, argv);
}
