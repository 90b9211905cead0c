// The `twotower` subcommands: parse flags, call the library, print. No logic of its own beyond
// presentation; every error from the library surfaces as one line and exit status 1.
#ifndef TWOTOWER_CLI_COMMANDS_H_
#define TWOTOWER_CLI_COMMANDS_H_

namespace twotower::cli {

int Main(int argc, char** argv);

}  // namespace twotower::cli

#endif  // TWOTOWER_CLI_COMMANDS_H_
