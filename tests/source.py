#!/usr/bin/python3
"""Checks on herald's source itself, as TAP: the layers of src/ call only
downwards (docs/ARCHITECTURE.md, "Layers"), and no function grows past
MAX_LINES; and on its docs: README.md stays short and points only at
files that exist, every config key is in herald.conf(5), and the man
pages format without a warning. Run from the top of the tree; no herald
binary needed."""
import glob
import os
import re
import shutil
import subprocess
import sys

MAX_LINES = 120
README_MAX_LINES = 200

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


def readme_length():
    with open("README.md", encoding="utf-8") as f:
        n = len(f.read().splitlines())
    if n > README_MAX_LINES:
        return ["README.md is %d lines (at most %d): move the detail to herald(1), "
                "herald.conf(5), docs/*.md or tests/README.md, and point there" % (n, README_MAX_LINES)]
    return []


# A pointer: a Markdown link or image, or a path in the text such as
# docs/serve.md, man/herald.conf.5 or tests/README.md (not the likes of
# templates/NAME.html, which are examples; top-level files are linked).
POINTER = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"|"
                     r"(?<![\w/.])((?:docs|man)/[\w./-]*\w|tests/README\.md)(?![\w/])")


def readme_pointers():
    faults = []
    with open("README.md", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            targets = [next(g for g in m.groups() if g) for m in POINTER.finditer(line)]
            for target in sorted(set(targets), key=targets.index):
                if re.match(r"[a-z]+:|#", target):
                    continue
                path = os.path.normpath(target.split("#")[0])
                if path.startswith("..") or not os.path.exists(path):
                    faults.append("README.md:%d: %s names no file in the tree" % (n, target))
    return faults


def readme_packages():
    """README's list of what builds herald is deps/build.txt, word for word."""
    with open("README.md", encoding="utf-8") as f:
        m = re.search(r"`deps/build\.txt`: `([^`]+)`", f.read())
    with open("deps/build.txt", encoding="utf-8") as f:
        want = f.read().split()
    if not m:
        return ["README.md does not list deps/build.txt's packages (\"`deps/build.txt`: `...`\")"]
    if m.group(1).split() != want:
        return ["README.md lists %s; deps/build.txt has %s" % (m.group(1).split(), want)]
    return []


def config_keys():
    """Every key the config reader (src/input/config*.c) accepts: its table
    of known keys (the MAILBOX_KEYS macro spelled out for each group), and
    every key any of its files looks up by name."""
    table = ""
    for path in sorted(glob.glob("src/input/config*.c")):
        with open(path, encoding="utf-8") as f:
            table += f.read()
    table = table[table.index("known[] = {"):]
    table = table[:table.index("NULL};")]
    macro = re.search(r"#define MAILBOX_KEYS\(g\)((?:.*\\\n)*.*)", table)
    mailbox = re.findall(r'g "([^"]+)"', macro.group(1))
    table = table[:macro.start()] + table[macro.end():]
    keys = set(re.findall(r'"([a-z_.]+)"', table))
    for group in re.findall(r'MAILBOX_KEYS\("([a-z_]+)"\)', table):
        keys.update(group + k for k in mailbox)
    for path in sorted(glob.glob("src/input/config*.c")):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        keys.update(re.findall(r'config_lookup\(&x->cf, "([a-z_.]+)"\)', src))
        keys.update(re.findall(r'\b(?:cfg_)?(?:get_(?:str|num|long|int|bool)|string_list)'
                               r'\(x, "([a-z_.]+)"', src))
    return keys


def roff_text(s):
    s = re.sub(r"\\f[BIRP]|\\&", "", s)
    return s.replace("\\-", "-").replace('\\(dq', '"').replace("\\e", "\\")


def documented_keys(page):
    """The names a man page documents: the bold words of each .TP tag (and
    .TQ), and the words of its .SS headings (the groups)."""
    with open(page, encoding="utf-8") as f:
        lines = f.read().split("\n")
    names = set()
    for i, line in enumerate(lines):
        tag = None
        if line in (".TP", ".TQ") and i + 1 < len(lines):
            tag = lines[i + 1]
        elif line.startswith(".SS"):
            tag = line[3:]
        if tag is None:
            continue
        if tag.startswith((".B ", ".BR ")):
            words = re.findall(r'"[^"]*"|\S+', tag.split(" ", 1)[1])
            bold = words[::2] if tag.startswith(".BR") else words
            tag = " ".join(bold) + " " + "".join(re.findall(r"\\fB(.*?)\\f[RIP]", tag))
        names.update(re.findall(r"[a-z_][a-z_.]*[a-z_]", roff_text(tag)))
    return names


def config_keys_documented():
    if not os.path.exists("man/herald.conf.5"):
        return ["man/herald.conf.5 does not exist: the config keys have no manual"]
    missing = sorted(config_keys() - documented_keys("man/herald.conf.5"))
    return ["src/input/config*.c accepts %s, which man/herald.conf.5 does not document "
            "(add a .TP entry for it)" % k for k in missing]


def man_pages_format():
    """groff -ww finds nothing to warn about; nor mandoc -Tlint, where it
    is installed, beyond its style notes."""
    faults = []
    for page in sorted(glob.glob("man/*.[1-9]")):
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page],
                               capture_output=True, text=True)
            faults += ["%s: groff: %s" % (page, l) for l in p.stderr.splitlines()]
        if shutil.which("mandoc"):
            p = subprocess.run(["mandoc", "-Tlint", "-Wwarning", page],
                               capture_output=True, text=True)
            faults += ["mandoc: " + l for l in (p.stdout + p.stderr).splitlines()]
    return faults


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    checks = [("every #include goes down the layers", layer_faults),
              ("no function is longer than %d lines" % MAX_LINES, long_functions),
              ("README.md is at most %d lines" % README_MAX_LINES, readme_length),
              ("every file README.md points to exists", readme_pointers),
              ("README.md's build packages are deps/build.txt", readme_packages),
              ("every key src/input/config*.c accepts is in man/herald.conf.5",
               config_keys_documented),
              ("the man pages format without warnings", man_pages_format)]
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
