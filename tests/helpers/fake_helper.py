#!/usr/bin/env python3
"""A helper that misbehaves on purpose, for the helper manager's tests.

Usage: fake_helper.py MODE [--concurrency]. Each request line is
``[ID] WORD ...``; the reply echoes WORD as ``user=WORD``. Modes:
ok, crash-after-2, crash-at-start, hang-on-slow (never answers a WORD containing
"slow"), garbage, reverse-pairs,
bh-once (state file in $FAKE_STATE), overflow, stderr-noise, late.
"""

import os
import sys
import time


def main() -> int:
    mode = sys.argv[1]
    concurrent = "--concurrency" in sys.argv
    if mode == "crash-at-start":
        return 3
    answered = 0
    held = []
    out = sys.stdout
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        cid, _, rest = line.partition(" ") if concurrent else ("", "", line)
        word = rest.split(" ")[0] if rest else ""
        prefix = f"{cid} " if concurrent else ""
        if mode == "hang-on-slow" and "slow" in word:
            continue
        if mode == "late" and word == "slow":
            time.sleep(1.5)
        if mode == "garbage":
            out.write(f"{prefix}HELLO there\n")
        elif mode == "reverse-pairs":
            held.append(f"{prefix}OK user={word}\n")
            if len(held) == 2:
                out.write(held[1] + held[0])
                held = []
        elif mode == "bh-once":
            state = os.environ["FAKE_STATE"]
            if not os.path.exists(state):
                open(state, "w").close()
                out.write(f"{prefix}BH message=temporarily%20broken\n")
            else:
                out.write(f"{prefix}OK user={word}\n")
        elif mode == "overflow":
            out.write("x" * (1 << 21))
        elif mode == "stderr-noise":
            sys.stderr.write(f"noise about {word}\n")
            sys.stderr.flush()
            out.write(f"{prefix}OK user={word}\n")
        else:
            out.write(f"{prefix}OK user={word}\n")
        out.flush()
        answered += 1
        if mode == "crash-after-2" and answered == 2:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
