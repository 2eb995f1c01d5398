#!/usr/bin/python3
"""Checks on herald's source itself, as TAP: the layers of src/ call only
downwards (docs/ARCHITECTURE.md, "Layers"), and no function grows past
MAX_LINES. Run from the top of the tree; no herald binary needed."""
import glob
import os
import re
import sys

MAX_LINES = 120

# Which layers each layer may include (itself always). Keep in step with
# the table in docs/ARCHITECTURE.md.
MAY = {
    "util": set(),
    "state": {"util"},
    "input": {"util"},
    "compose": {"input", "util"},
    "deliver": {"compose", "state", "input", "util"},
    "mailbox": {"state", "input", "util"},
    "web": {"mailbox", "deliver", "compose", "state", "input", "util"},
    "cli": {"web", "mailbox", "deliver", "compose", "state", "input", "util"},
}


def sources():
    return sorted(glob.glob("src/*/*.[ch]"))


def layer_faults():
    faults = []
    for path in sources():
        layer = path.split("/")[1]
        if layer not in MAY:
            faults.append("%s: %s is not a layer docs/ARCHITECTURE.md knows" % (path, layer))
            continue
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                target = m.group(1)
                if "/" not in target:
                    faults.append('%s:%d: #include "%s" names no layer (write "LAYER/%s")'
                                  % (path, n, target, target))
                    continue
                other = target.split("/")[0]
                if not os.path.exists(os.path.join("src", target)):
                    faults.append("%s:%d: %s does not exist" % (path, n, target))
                elif other != layer and other not in MAY[layer]:
                    faults.append("%s:%d: %s may not call %s (%s)" % (path, n, layer, other, target))
    return faults


def long_functions():
    """Top-level function bodies: from a '{' in column 0 to the next '}'
    in column 0 (the kernel style every file here is written in)."""
    faults = []
    for path in sorted(glob.glob("src/*/*.c")):
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        start = None
        for n, line in enumerate(lines, 1):
            if line.startswith("{") and start is None:
                start = n
                # the signature: the nearest line above with a '('
                k = n - 2
                while k > 0 and "(" not in lines[k]:
                    k -= 1
                name = re.findall(r"(\w+)\s*\(", lines[k])
                name = name[0] if name else "?"
            elif line.startswith("}") and start is not None:
                length = n - start - 1
                if length > MAX_LINES:
                    faults.append("%s:%d: %s() is %d lines (at most %d)"
                                  % (path, start, name, length, MAX_LINES))
                start = None
    return faults


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    checks = [("every #include goes down the layers", layer_faults),
              ("no function is longer than %d lines" % MAX_LINES, long_functions)]
    print("1..%d" % len(checks))
    failed = 0
    for i, (what, check) in enumerate(checks, 1):
        faults = check()
        print("%s %d - %s" % ("not ok" if faults else "ok", i, what))
        for f in faults:
            print("# " + f)
        failed += bool(faults)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
