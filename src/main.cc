// The `twotower` command: dispatches to src/cli/.
#include "cli/commands.h"

int main(int argc, char** argv) { return twotower::cli::Main(argc, argv); }
