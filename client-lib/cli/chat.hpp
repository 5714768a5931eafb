#pragma once
// The interactive session: `im-cli --user NAME`. Reads commands and lines from stdin (a terminal
// or a pipe), prints what arrives as it arrives. See docs/CLIENT.md "im-cli".

#include "args.hpp"

namespace imcli {

// Returns the exit code.
int run_chat(const Args& args);

}  // namespace imcli
