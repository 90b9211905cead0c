// The `twotower` command's entry point (src/main.cc calls Main). The subcommands live one per
// file under src/cli/ (cli.h); each parses flags, calls `app` once and prints.
#ifndef TWOTOWER_CLI_COMMANDS_H_
#define TWOTOWER_CLI_COMMANDS_H_

#include "twotower/core/error.h"

namespace twotower::cli {

int Main(int argc, char** argv);

// The one table from error codes to exit statuses: 1 for every error a user can act on (a bad
// flag or file, something missing, corrupt or refused by the system; the message says which),
// 2 for an internal error of twotower (as for any exception that is not an Error), 0 for
// success. Scripts tell the kinds apart by the message; the statuses stay those twotower always
// used.
int ExitCode(ErrorCode code);

}  // namespace twotower::cli

#endif  // TWOTOWER_CLI_COMMANDS_H_
