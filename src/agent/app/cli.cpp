#include "agent/app/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "agent/app/commands.h"

namespace sa::agent::app {

int run_cli(int argc, char** argv) {
    CLI::App app{
        "secure-agent: runs inside your network, dials out to the hub over HTTPS, runs signed "
        "metadata-extraction jobs and delivers the results."};
    app.require_subcommand(1);

    std::string config_path;
    CLI::App* run = app.add_subcommand("run", "Run the agent until SIGTERM or SIGINT.");
    run->add_option("--config", config_path, "Path of the agent's YAML config file")->required();

    std::string check_path;
    CLI::App* check = app.add_subcommand(
        "check-config",
        "Validate a config file (keys, values, referenced files) without reading secrets.");
    check->add_option("--config", check_path, "Path of the agent's YAML config file")->required();

    CLI::App* version =
        app.add_subcommand("version", "Print version, protocol version and binary SHA-256.");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (run->parsed()) return run_agent(config_path);
    if (check->parsed()) return check_config(check_path, std::cout, std::cerr);
    if (version->parsed()) return print_version(std::cout);
    return kExitFailure;
}

}  // namespace sa::agent::app
