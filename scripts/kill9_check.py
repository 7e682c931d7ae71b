"""Kill -9 a command at random moments, check what it leaves, then let it finish.

    python scripts/kill9_check.py --kills 10 --min 4 --max 20 -- crnn-keras train --output-dir D ...
    python scripts/kill9_check.py --dir D --kills 10 -- crnn-keras export RUN --output-dir D ...

After every kill, and after the final uninterrupted run, every file under `--dir`
(default: the command's `--output-dir`) must be non-empty, no temporary
(`.tmp-`) file may remain once a later run has finished, `.keras` files must be
whole zip archives, JSON must parse, and a backup's metadata must name an
existing weights file. Prints one line per kill and exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile


def problems(root: str, finished: bool) -> list[str]:
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if ".tmp-" in name:
                if finished:
                    found.append(f"orphaned temporary file {rel}")
                continue  # A killed writer's leftover; the next run must clear it.
            if os.path.getsize(path) == 0:
                found.append(f"empty file {rel}")
            elif name.endswith(".keras"):
                try:
                    with zipfile.ZipFile(path) as z:
                        if z.testzip() is not None:
                            found.append(f"corrupt {rel}")
                except zipfile.BadZipFile:
                    found.append(f"partial {rel}")
            elif name.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as f:
                        data = json.load(f)
                except ValueError:
                    found.append(f"partial {rel}")
                    continue
                if name == "training_metadata.json" and not os.path.exists(os.path.join(folder, data["weights"])):
                    found.append(f"{rel} names a missing {data['weights']}")
    return found


def progress(root: str) -> str:
    """What the killed run had committed: finished epochs, or published versions."""
    metadata = os.path.join(root, "backup", "training_metadata.json")
    if os.path.exists(metadata):
        with open(metadata, encoding="utf-8") as f:
            return f"{json.load(f)['epoch']} epochs committed"
    if os.path.isdir(root):
        return f"entries {sorted(os.listdir(root))}"
    return "nothing written yet"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--min", type=float, default=4.0, help="earliest kill, seconds after start")
    parser.add_argument("--max", type=float, default=20.0, help="latest kill")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="folder to check (default: the command's --output-dir)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    root = args.dir or command[command.index("--output-dir") + 1]
    rng = random.Random(args.seed)
    failures = []
    for i in range(args.kills):
        delay = rng.uniform(args.min, args.max)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = problems(root, finished=False) if os.path.isdir(root) else []
        failures += found
        print(f"kill {i + 1}: at {delay:.1f}s{' (had finished)' if finished else ''}, {progress(root)}: "
              f"{'; '.join(found) or 'nothing empty, partial or broken'}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    found = problems(root, finished=True)
    failures += found + ([f"the final run exited {done.returncode}: {done.stderr[-2000:]}"] if done.returncode else [])
    print(f"final run: exit {done.returncode}; {'; '.join(found) or 'nothing empty, partial, broken or orphaned'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
