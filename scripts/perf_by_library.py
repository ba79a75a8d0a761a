"""Per-request CPU by thread, library and symbol, from a ``perf record`` of a server under load.

``perf`` samples native code (kernel, gRPC's C core and Cython, uvloop, the interpreter,
ONNX Runtime, protobuf's upb, numpy, libc) where py-spy sees only "no Python frame". Record the
server's processes while ``leadgw bench`` holds a known rate, then divide by the requests::

    perf record -e cpu-clock -F 499 -g -p <pid>[,<pid>...] -o perf.data -- sleep 8
    python scripts/perf_by_library.py perf.data <requests in those 8 s> [symbols]

Each sample is one period of the software clock (``-F`` per second per thread); a sample is
charged to the library and symbol at the top of its stack (its leaf), and to its thread:
``loop`` is a process's main thread (the event loop), the others by their name. Needs ``perf``
on the PATH (Debian: ``linux-perf``) and read access to the recording.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

_FRAME = re.compile(r"\s*[0-9a-f]+\s+(?P<sym>.*?)\s+\((?P<dso>[^)]*)\)$")


@dataclass
class Profile:
    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    libraries: Counter[str] = field(default_factory=Counter)
    loop_libraries: Counter[str] = field(default_factory=Counter)
    symbols: Counter[tuple[str, str]] = field(default_factory=Counter)


def read(path: str) -> Profile:
    """Leaf library and symbol of every sample in ``perf script``'s output of ``path``."""
    script = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,pid,tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    profile = Profile()
    for block in script.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        comm, ids = lines[0].split()[:2]
        pid, _, tid = ids.partition("/")
        leaf = _FRAME.match(lines[1])
        if leaf is None:
            continue
        library = leaf["dso"].rsplit("/", 1)[-1]
        symbol = leaf["sym"].split("+", 1)[0]
        thread = "loop" if pid == tid else comm
        profile.samples += 1
        profile.threads[thread] += 1
        profile.libraries[library] += 1
        if thread == "loop":
            profile.loop_libraries[library] += 1
        profile.symbols[(library, symbol)] += 1
    return profile


def sample_us(path: str) -> float:
    """One sample's length in µs, from the recording's ``-F`` frequency."""
    header = subprocess.run(
        ["perf", "report", "-i", path, "--header-only"], capture_output=True, text=True
    ).stdout
    found = re.search(r"sample_freq \} = (\d+)", header)
    return 1e6 / int(found[1]) if found else 1e6 / 4000  # perf's default frequency


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, requests = argv[0], float(argv[1])
    top = int(argv[2]) if len(argv) > 2 else 30
    profile, period = read(path), sample_us(path)

    def show(title: str, counts: Counter[str] | Counter[tuple[str, str]], n: int) -> None:
        print(f"-- {title} (µs per request)")
        for key, count in counts.most_common(n):
            name = " ".join(key) if isinstance(key, tuple) else key
            print(f"{count * period / requests:8.1f}  {name}")

    print(f"{profile.samples} samples, {profile.samples * period / requests:.1f} µs per request")
    show("by thread", profile.threads, 10)
    show("by library, every thread", profile.libraries, 15)
    show("by library, the event loop's thread", profile.loop_libraries, 15)
    show("by symbol", profile.symbols, top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
