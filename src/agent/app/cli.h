#pragma once
// The secure-agent command line (CLI11, kept to this one translation unit
// because CLI11 is slow to compile).
namespace sa::agent::app {

// Parses argv and runs the chosen command; returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace sa::agent::app
