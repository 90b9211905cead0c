// Failpoints: named places where a test can make the process die as a crash would (SIGKILL),
// to check that whatever was on disk at that moment is still usable (files.h's atomic writes,
// training checkpoints). Modelled on FreeBSD's fail(9) and TiKV's fail-rs, reduced to one action.
//
// TWOTOWER_FAILPOINT="name" kills the process at the first pass through FailPoint("name");
// "name#N" at the N-th pass; "name#N=INT" or "=TERM" raises SIGINT or SIGTERM there instead of
// SIGKILL (a Ctrl-C at that moment). Unset (the normal case), FailPoint costs one load and a
// branch.
// Thread-safe.
#ifndef TWOTOWER_CORE_FAILPOINT_H_
#define TWOTOWER_CORE_FAILPOINT_H_

namespace twotower {

// Raises SIGKILL (or the signal named) when TWOTOWER_FAILPOINT names this point and pass.
void FailPoint(const char* name);

}  // namespace twotower

#endif  // TWOTOWER_CORE_FAILPOINT_H_
