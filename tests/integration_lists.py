#!/usr/bin/python3
"""Lists as spreadsheets export them (issue 12, part 4): Excel's "Unicode
Text" (UTF-16LE with a BOM and tabs), Windows-1252 files from Excel's
"CSV (Comma delimited)" and LibreOffice, ';'-separated exports from
locales with a decimal comma, and addresses like alice@localhost.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_lists.py [PATTERN...]

The files are written byte for byte as the programs write them. Each test
asserts the exact message a person reads and the exit code, from
`subscribers check` and `send --dry-run` alike (they must agree on every
row), and what was written for each reader.
"""

import email
import email.policy
import os
import sys

from harness import EX_CONFIG, EX_DATAERR, EX_OK, Suite, equal, expect

SUITE = Suite()
test = SUITE.test


def world(t, list_bytes, changes=None):
    t.post()
    t.write("subs.csv", list_bytes)
    t.config(None, changes or {})
    return t.path("subs.csv")


def dry_run(t, *args):
    return t.send("--dry-run", t.path("out"), *args)


def written(t):
    """{address: parsed message} of the dry run's .eml files."""
    out = t.path("out")
    got = {}
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        with open(os.path.join(out, name), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        got[msg["To"].addresses[0].addr_spec] = msg
    return got


def herald_lines(text):
    return [l for l in text.splitlines() if l.startswith("herald: ")]


def refused_whole(t, path, want):
    """check and send both refuse the list with want, exit 65, nothing written."""
    chk = t.herald("subscribers", "check")
    equal(chk.code, EX_DATAERR, "subscribers check exit code")
    equal(herald_lines(chk.err), [f"herald: {want}"], "subscribers check says")
    equal(chk.out, "", "subscribers check prints no count for a list it cannot read")
    snd = dry_run(t)
    equal(snd.code, EX_DATAERR, "send exit code")
    equal(herald_lines(snd.err), [f"herald: {want}"], "send says")
    equal(written(t), {}, "messages written")


@test("Excel's \"Unicode Text\" (UTF-16LE, BOM, tabs): refused whole by check and send with "
      "the iconv line and the tab delimiter to set; converted as told, it is read")
def test_excel_unicode_text(t):
    text = "email\tname\r\nann@example.net\tAnn\r\nfran@example.net\tFrançoise\r\n"
    path = world(t, text.encode("utf-16"))          # Python writes the BOM, LE here
    refused_whole(t, path,
                  f"{path}:1: the list is UTF-16 (Excel's \"Unicode Text\"), herald reads UTF-8: "
                  f"export it as \"CSV UTF-8\", or convert it: iconv -f UTF-16 -t UTF-8 {path} > "
                  f"utf8.csv (its fields are separated by tabs: also set subscribers_delimiter = "
                  f"\"\\t\")")
    # Done as the message says: converted, and the delimiter set.
    t.write("subs.csv", text.encode("utf-8"))
    t.config(None, {"subscribers_delimiter": "\t"})
    chk = t.herald("subscribers", "check")
    equal((chk.code, chk.out), (EX_OK, f"{path}: 2 subscribed, 0 not subscribed, 0 bad rows\n"),
          "check after the fix")
    equal(dry_run(t).code, EX_OK, "send after the fix")
    got = written(t)
    equal(sorted(got), ["ann@example.net", "fran@example.net"], "readers written")
    equal(got["fran@example.net"]["To"].addresses[0].display_name, "Françoise", "name")


@test("a Windows-1252 export (Excel \"CSV (Comma delimited)\", é and €): refused whole, "
      "naming the line and byte and the iconv line, not row by row")
def test_cp1252(t):
    text = ("email,name,note\r\nann@example.net,Ann,ok\r\nbob@example.net,Bob,fine\r\n"
            "rene@example.net,René,€ 5\r\nzoe@example.net,Zoë,\r\n")
    path = world(t, text.encode("cp1252"))
    refused_whole(t, path,
                  f"{path}:4: the list is not UTF-8 (byte 0xE9); it looks like Windows-1252 or "
                  f"Latin-1: export it as \"CSV UTF-8\" (LibreOffice: character set \"Unicode "
                  f"(UTF-8)\"), or convert it: iconv -f WINDOWS-1252 -t UTF-8 {path} > utf8.csv")


@test("a UTF-8 BOM (Excel's \"CSV UTF-8\") is simply accepted")
def test_utf8_bom(t):
    path = world(t, "\ufeffEmail,Name\r\nzoe@example.net,Zoë\r\n".encode("utf-8"))
    chk = t.herald("subscribers", "check")
    equal((chk.code, chk.out, chk.err), (EX_OK, f"{path}: 1 subscribed, 0 not subscribed, "
                                                "0 bad rows\n", ""), "check")
    equal(dry_run(t).code, EX_OK, "send")
    equal(written(t)["zoe@example.net"]["To"].addresses[0].display_name, "Zoë", "name")


SEMI = ("\ufeffemail;name;city\r\n"
        "ann@example.net;Ann;Oslo\r\n"
        "fran@example.net;\"Françoise; la grande\";Paris, France\r\n"
        "ANN@example.net;Ann again;Oslo\r\n"
        "bob@example.net;Bob\r\n"
        "cy@example.net;Cy;Lima\r\n")


@test("a ';' export without the key: one message naming subscribers_delimiter, from check "
      "and send; nothing written")
def test_semicolon_hint(t):
    path = world(t, SEMI.encode("utf-8"))
    refused_whole(t, path,
                  f"{path}:1: no \"email\" column, but the header looks separated by \";\", not "
                  f"\",\": set subscribers_delimiter = \";\" in the config (or export the list "
                  f"with commas)")


@test("a ';' list with subscribers_delimiter = \";\": check and send report the same rows "
      "(duplicate, short row) and send to the rest, ';' inside quotes and ',' in a field kept")
def test_semicolon_list(t):
    path = world(t, SEMI.encode("utf-8"), {"subscribers_delimiter": ";"})
    want = [f"herald: {path}:4: duplicate address ANN@example.net (first on line 2)",
            f"herald: {path}:5: expected 3 fields, found 2"]
    chk = t.herald("subscribers", "check")
    equal(chk.code, EX_OK, "check exit code")
    equal(herald_lines(chk.err), want, "check's rows")
    equal(chk.out, f"{path}: 3 subscribed, 0 not subscribed, 2 bad rows\n", "check's count")
    snd = dry_run(t)
    equal(snd.code, EX_OK, "send exit code")
    equal(herald_lines(snd.err), [w + "; skipped" for w in want], "send's rows")
    got = written(t)
    equal(sorted(got), ["ann@example.net", "cy@example.net", "fran@example.net"], "written")
    equal(got["fran@example.net"]["To"].addresses[0].display_name, "Françoise; la grande",
          "quoted ';' in a name")
    # `subscribers check FILE` reads the config's delimiter too.
    chk2 = t.herald("subscribers", "check", path)
    equal((herald_lines(chk2.err), chk2.out), (want, chk.out), "subscribers check FILE")


@test("unsubscribing from a ';' list keeps ';' (new status column included); the next send "
      "leaves that reader out")
def test_semicolon_unsubscribe(t):
    path = world(t, b"email;name\r\nann@example.net;Ann, A\r\nbob@example.net;\"Bob; B\"\r\n",
                 {"subscribers_delimiter": ";"})
    r = t.herald("subscribers", "unsubscribe", "--address", "BOB@example.net")
    equal((r.code, r.out), (EX_OK, "BOB@example.net: unsubscribed\n"), "unsubscribe")
    with open(path, "rb") as f:
        equal(f.read(), b"email;name;status\r\nann@example.net;Ann, A;\r\n"
                        b"bob@example.net;\"Bob; B\";unsubscribed\r\n", "the list after")
    chk = t.herald("subscribers", "check")
    equal(chk.out, f"{path}: 1 subscribed, 1 not subscribed, 0 bad rows\n", "check after")
    equal(dry_run(t).code, EX_OK, "send")
    equal(sorted(written(t)), ["ann@example.net"], "written")


@test("alice@localhost and bob@intranet are refused by check and send with the reason; "
      "--test=alice@localhost is a usage error that says it")
def test_local_addresses(t):
    path = world(t, b"email,name\nann@example.net,Ann\nalice@localhost,Alice\n"
                    b"bob@intranet,Bob\ncy@mail.localhost,Cy\n")
    want = [f"herald: {path}:3: invalid address \"alice@localhost\": localhost is the machine "
            "herald runs on, not a reader's mail domain",
            f"herald: {path}:4: invalid address \"bob@intranet\": domain has no dot: a bare host "
            "name only reaches a machine on the local network",
            f"herald: {path}:5: invalid address \"cy@mail.localhost\": localhost is the machine "
            "herald runs on, not a reader's mail domain"]
    chk = t.herald("subscribers", "check")
    equal(herald_lines(chk.err), want, "check")
    snd = dry_run(t)
    equal(herald_lines(snd.err), [w + "; skipped" for w in want], "send")
    equal(sorted(written(t)), ["ann@example.net"], "written")
    r = t.send("--test=alice@localhost")
    equal(r.code, 64, "--test exit code")
    equal(herald_lines(r.err), ["herald: --test: not a valid address: alice@localhost (localhost "
                                "is the machine herald runs on, not a reader's mail domain)"],
          "--test message")


@test("subscribers_delimiter other than , ; tab | is a FILE:LINE config error")
def test_bad_delimiter(t):
    world(t, b"email\nann@example.net\n", {"subscribers_delimiter": "::"})
    with open(t.path("herald.conf")) as f:
        line = next(i for i, l in enumerate(f, 1) if l.startswith("subscribers_delimiter"))
    r = t.herald("subscribers", "check")
    equal(r.code, EX_CONFIG, "exit code")
    equal(herald_lines(r.err), [f"herald: {t.path('herald.conf')}:{line}: subscribers_delimiter: "
                                "expected \",\", \";\", \"\\t\" (tab) or \"|\", found \"::\""],
          "message")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
