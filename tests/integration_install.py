#!/usr/bin/python3
"""herald's first hour (issue 12): `make install PREFIX=...` into a temp
prefix, `herald init` in an empty directory outside the tree, then the
commands init prints, as pasted, against the capture server: a --test and
a real send with nothing copied from the source tree. And the messages a
new user meets on the way (init in the way of files, a missing template,
a missing list, no config, `make demo`), asserted as printed.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_install.py [PATTERN...]

The installed binary is linked from the objects beside HERALD (build/ or
build-san/: `make install INSTALL_FROM=...`), into the test's temp dir
(INSTALL_BUILD), so build/herald is never touched and the plain and ASan
runs of this suite can go at once. Tests that need no install run HERALD.
"""

import os
import re
import shutil
import subprocess
import sys
import time

from harness import (EX_CONFIG, EX_NOINPUT, EX_OK, EX_USAGE, HERALD, ROOT, SECRET, Run, Suite,
                     equal, expect, log)

SUITE = Suite()
test = SUITE.test
EX_CANTCREAT = 73
SUBJECT = "Welcome to the first issue"        # skel/first-issue.md
TRANSCRIPT = re.compile(r"^smtp \d+ [<>] ", re.M)
GUIDES = ("templates.md", "scaling.md", "bounces.md", "serve.md", "security.md")


def clean_env(extra=None):
    """The environment of a person's shell: no HERALD* variable, no make
    jobserver (this may run under `make check`), HOME of the test's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HERALD") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra or {})
    return env


def run(t, args, cwd, env, shell=False):
    log(f"# $ (cd {cwd}) {args if shell else ' '.join(args)}")
    p = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120, shell=shell)
    return t.record(Run(args, p.returncode, p.stdout.decode(errors="replace"),
                        p.stderr.decode(errors="replace")))


def install(t):
    """make install PREFIX=<temp>/prefix; returns the prefix."""
    prefix, build = t.path("prefix"), t.path("install-build")
    here = os.path.dirname(os.path.abspath(HERALD))
    origin = os.path.basename(here) if os.path.dirname(here) == ROOT else "build"
    if origin not in ("build", "build-san"):
        origin = "build"
    r = run(t, ["make", "--no-print-directory", "install", f"PREFIX={prefix}", "DESTDIR=",
                f"INSTALL_BUILD={build}", f"INSTALL_FROM={origin}"], ROOT, clean_env())
    equal(r.code, 0, "make install exit code")
    for f in ("bin/herald", "share/man/man1/herald.1", "share/man/man5/herald.conf.5",
              "share/herald/templates/default.html", "share/herald/templates/plain.txt",
              "share/doc/herald/config.example", "share/doc/herald/README.md",
              "share/doc/herald/ARCHITECTURE.md") + tuple(
                  "share/doc/herald/" + n for n in GUIDES):
        expect(os.path.isfile(os.path.join(prefix, f)), f"{f} is installed")
    for page, src in (("share/man/man1/herald.1", "man/herald.1"),
                      ("share/man/man5/herald.conf.5", "man/herald.conf.5")):
        with open(os.path.join(prefix, page), "rb") as a, open(os.path.join(ROOT, src), "rb") as b:
            equal(a.read(), b.read(), f"{page} is {src}")
    return prefix


def user(t, prefix, secret=SECRET):
    """A shell of someone who installed into prefix: its bin first on PATH."""
    home = t.path("home")
    os.makedirs(home, exist_ok=True)
    env = clean_env({"PATH": f"{prefix}/bin:/usr/bin:/bin", "HOME": home})
    if secret:
        env["HERALD_SECRET"] = secret
    return home, env


def init_out(dirname, post, herald="herald"):
    cd = f"cd {dirname} && " if dirname != "." else ""
    conf = "herald.conf" if dirname == "." else f"{dirname}/herald.conf"
    return (f"herald: started a newsletter in {dirname}/: herald.conf, {post}, subscribers.csv, state/\n"
            "Next:\n"
            f"  1. edit {conf} where it says TO EDIT (from, list_id, unsubscribe, smtp.url,\n"
            "     test.to), and put your readers in subscribers.csv\n"
            "  2. export HERALD_SECRET=$(openssl rand -hex 32)   # once, and keep it: it signs the "
            "unsubscribe links\n"
            f"  3. {cd}{herald} check {post} && {herald} send --test {post}\n")


def first_post():
    return f"posts/{time.strftime('%Y-%m-%d')}-first-issue.md"


def point_at(conf_path, server):
    """What step 1 asks of a person, for a loopback test relay: smtp.url
    and, since it speaks no TLS, starttls."""
    with open(conf_path, encoding="utf-8") as f:
        conf = f.read()
    new = conf.replace('url = "smtp://mail.example.org:587";', f'url = "{server.url()}";', 1)
    new = re.sub(r'^  starttls = "required";', '  starttls = "never";', new, count=1, flags=re.M)
    expect(new.count(server.url()) == 1 and 'starttls = "never"' in new,
           "herald.conf has the smtp.url and starttls lines config.example has")
    with open(conf_path, "w", encoding="utf-8") as f:
        f.write(new)


def parts(mail):
    html = mail.msg.get_body(("html",)).get_content()
    text = mail.msg.get_body(("plain",)).get_content()
    return html, text


def conf_line(conf_path, pattern):
    with open(conf_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if re.match(pattern, line):
                return n
    raise AssertionError(f"no line {pattern!r} in {conf_path}")


@test("make install PREFIX=..., `herald init letters` outside the tree, smtp.url pointed at a "
      "test server: the printed steps 2 and 3 run as pasted (check, --test), then a real send, "
      "then README's quick start as pasted; the installed templates are the ones used, and "
      "nothing comes from the source tree")
def test_first_hour(t):
    prefix = install(t)
    # Mark the installed layout: the mail must show it came from there.
    with open(os.path.join(prefix, "share/herald/templates/default.html"), "a") as f:
        f.write("<!-- the installed default -->\n")
    home, env = user(t, prefix, secret=None)
    post = first_post()
    r = run(t, ["herald", "init", "letters"], home, env)
    equal((r.code, r.err), (EX_OK, ""), "init exit code and stderr")
    equal(r.out, init_out("letters", post), "what init prints")
    letters = os.path.join(home, "letters")
    equal(sorted(os.listdir(letters)), ["herald.conf", "posts", "state", "subscribers.csv"],
          "what init wrote")
    equal(os.listdir(os.path.join(letters, "state")), [], "state/ is empty")
    equal(os.stat(os.path.join(letters, "state")).st_mode & 0o777, 0o700, "state/ mode")
    conf_path = os.path.join(letters, "herald.conf")
    with open(conf_path, encoding="utf-8") as f:
        conf = f.read()
    with open(os.path.join(ROOT, "config.example"), encoding="utf-8") as f:
        equal(conf, f.read(), "herald.conf is config.example")
    for key in ("from", "list_id", "  url"):
        expect(re.search(rf"^{key} = .*# TO EDIT", conf, re.M), f"{key.strip()} is marked TO EDIT")
    expect(ROOT not in conf, "herald.conf names nothing in the source tree")
    with open(os.path.join(letters, "subscribers.csv")) as f:
        equal(f.read(), "email,name,status\nreader@example.org,Example Reader,subscribed\n",
              "subscribers.csv")

    s = t.server()
    point_at(conf_path, s)
    steps = [l[5:] for l in r.out.splitlines() if l.startswith(("  2. ", "  3. "))]
    equal(len(steps), 2, "steps 2 and 3 in what init printed")
    r2 = run(t, "\n".join(steps) + "\n", home, env, shell=True)
    equal(r2.code, EX_OK, "steps 2 and 3, pasted: exit code")
    # The warnings: no DKIM yet, no postal_address yet (both TO EDIT).
    expect(f"{post}: 0 errors, 2 warnings;" in r2.out, r2.out)
    equal(r2.err, "herald: herald.conf: warning: no postal_address: commercial mail must show a "
          "physical address (CAN-SPAM; many other laws and providers expect one); set "
          "postal_address = \"...\" and the default templates put it in the footer\n"
          "herald: herald.conf: warning: no DKIM for example.org: add dkim = { domain = "
          "\"example.org\"; selector = \"...\"; key_file = \"...\"; } (Gmail and Yahoo expect bulk "
          "mail to be signed)\n", "check's two warnings, and nothing else on stderr")
    mails = s.by_rcpt()
    equal(list(mails), ["me@example.org"], "the --test went to test.to only")
    m = mails["me@example.org"]
    equal(m.msg["Subject"], f"[TEST] {SUBJECT}", "subject")
    html, text = parts(m)
    expect("<!-- the installed default -->" in html, "the installed default.html laid it out")
    expect("An emphasised line right after an image becomes its caption." in html, "caption")
    expect('<td class="caption"' in html, "the caption is the figure's")
    expect("Hi Example Reader," in text and "One issue a month" in text, text[:300])

    r3 = run(t, ["herald", "send", post], letters, dict(env, HERALD_SECRET=SECRET))
    equal(r3.code, EX_OK, "the real send's exit code")
    mails = s.by_rcpt()
    equal(sorted(mails), ["me@example.org", "reader@example.org"], "who got mail")
    equal(mails["reader@example.org"].msg["Subject"], SUBJECT, "subject of the real send")
    slug = os.path.basename(post)[:-3]
    with open(os.path.join(letters, "state", f"{slug}.journal")) as f:
        rows = [l.split("\t") for l in f.read().splitlines()]
    equal([row[1] for row in rows], ["reader@example.org"], "journal")
    # README says where config.example is installed: it is there.
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    expect("PREFIX/share/doc/herald/config.example" in readme, "README names the place")
    # README's quick start, after init, as pasted (its post renamed to today's).
    quick = readme[readme.index("## Quick start"):readme.index("\n## ", readme.index("## Quick start") + 3)]
    cmds = [l.split("#")[0].strip() for l in quick.splitlines()
            if l.startswith("    herald ") and not l.startswith("    herald init")]
    equal([c.split()[1] for c in cmds], ["subscribers", "check", "preview", "send", "send"],
          "README's quick start after init")
    for cmd in cmds:
        cmd = re.sub(r"posts/\d{4}-\d\d-\d\d-first-issue\.md", post, cmd)
        r4 = run(t, cmd, letters, dict(env, HERALD_SECRET=SECRET, HERALD_CHROMIUM=""), shell=True)
        equal(r4.code, EX_OK, f"README's {cmd!r}: exit code")
    equal(sorted(s.received()), ["me@example.org", "me@example.org", "reader@example.org"],
          "README's steps: one more --test to test.to; the send again mailed nobody")
    # And its crontab line, from a shell whose HOME holds letters/.
    cron = [l for l in quick.splitlines() if l.startswith("    0 * * * *")]
    equal(len(cron), 1, "one crontab line in the quick start")
    with open(os.path.join(letters, "secrets.env"), "w") as f:
        f.write(f"export HERALD_SECRET={SECRET}\n")
    os.chmod(os.path.join(letters, "secrets.env"), 0o600)
    r5 = run(t, cron[0].split(None, 5)[5], home, env, shell=True)
    equal((r5.code, r5.out, r5.err), (EX_OK, "", ""), "the crontab line: nothing due, not a word")


@test("herald init writes over nothing: every path in the way is named, exit 73, and nothing "
      "is created; -c and a second DIR are usage errors")
def test_init_refuses(t):
    env = clean_env()
    d = t.path("cwd", "letters")
    os.makedirs(os.path.join(d, "state"))
    with open(os.path.join(d, "subscribers.csv"), "w") as f:
        f.write("email\nmine@example.org\n")
    r = run(t, [HERALD, "init", "letters"], t.cwd, env)
    equal(r.code, EX_CANTCREAT, "exit code")
    equal(r.err, "herald: letters/subscribers.csv, letters/state already exist: init writes over "
          "nothing, so it wrote nothing (move them away, or give init another directory)\n",
          "stderr")
    equal(r.out, "", "stdout")
    equal(sorted(os.listdir(d)), ["state", "subscribers.csv"], "nothing was added")
    with open(os.path.join(d, "subscribers.csv")) as f:
        equal(f.read(), "email\nmine@example.org\n", "the list is untouched")

    os.makedirs(t.path("cwd", "b"))
    r = run(t, [HERALD, "init", "b/"], t.cwd, env)
    equal(r.code, EX_OK, "init into an empty directory")
    r = run(t, [HERALD, "init", "b"], t.cwd, env)
    equal(r.code, EX_CANTCREAT, "a second init")
    equal(r.err, f"herald: b/herald.conf, b/{first_post()}, b/subscribers.csv, b/state already "
          "exist: init writes over nothing, so it wrote nothing (move them away, or give init "
          "another directory)\n", "stderr of a second init")

    r = run(t, [HERALD, "-c", "x.conf", "init"], t.cwd, env)
    equal((r.code, r.err), (EX_USAGE, "herald: init writes DIR/herald.conf; -c does not apply to "
                            "it\nTry 'herald --help'.\n"), "-c init")
    r = run(t, [HERALD, "init", "a", "b"], t.cwd, env)
    equal((r.code, r.err), (EX_USAGE, "herald: init: expected at most one DIR\nTry 'herald "
                            "--help'.\n"), "init a b")


@test("herald init failing half-way (posts/ is a directory nothing can be created in) exits 73 "
      "naming the file, and removes what it had written; posts/ as a symlink to a directory is fine")
def test_init_half_way(t):
    env = clean_env()
    d = t.path("cwd", "l")
    os.makedirs(d)
    os.symlink("/proc/self", os.path.join(d, "posts"))   # even root cannot create files there
    r = run(t, [HERALD, "init", "l"], t.cwd, env)
    equal((r.code, r.err), (EX_CANTCREAT, f"herald: l/{first_post()}: cannot create: No such file "
                            "or directory (init left nothing behind)\n"), "exit code and stderr")
    equal(os.listdir(d), ["posts"], "herald.conf, written before, is gone again")
    os.unlink(os.path.join(d, "posts"))
    os.makedirs(t.path("elsewhere"))
    os.symlink(t.path("elsewhere"), os.path.join(d, "posts"))
    r = run(t, [HERALD, "init", "l"], t.cwd, env)
    equal(r.code, EX_OK, "init with posts/ a symlink to a directory")
    expect(os.path.isfile(t.path("elsewhere", os.path.basename(first_post()))), "the post is there")


@test("herald init in the current directory, from a binary not on PATH: the printed commands "
      "name it by its absolute path and have no cd; the example post passes check with 0 errors")
def test_init_here(t):
    env = clean_env({"PATH": "/usr/bin:/bin", "HERALD_SECRET": SECRET})
    r = run(t, [HERALD, "init"], t.cwd, env)
    equal(r.code, EX_OK, "exit code")
    post = first_post()
    equal(r.out, init_out(".", post, os.path.realpath(HERALD)), "what init prints")
    with open(os.path.join(t.cwd, post), encoding="utf-8") as f:
        src = f.read()
    expect(f"\ndate: {time.strftime('%Y-%m-%d')} 08:00\n" in src, "the post is dated today")
    r = run(t, [HERALD, "check", post], t.cwd, env)
    equal(r.code, EX_OK, "check exit code")
    equal(r.out.splitlines()[-1].split(";")[0], f"{post}: 0 errors, 2 warnings", "check's verdict")


@test("a missing template names the directory herald looked in and the setting behind it: the "
      "installed one when templates is unset; a templates/ beside the config wins over it")
def test_missing_template(t):
    prefix = install(t)
    home, env = user(t, prefix)
    run(t, ["herald", "init", "."], home, env)
    conf = os.path.join(home, "herald.conf")
    with open(conf, encoding="utf-8") as f:
        text = f.read()
    with open(conf, "w", encoding="utf-8") as f:
        f.write(text.replace('\ntemplate = "default";', '\ntemplate = "fancy";'))
    line = conf_line(conf, r'template = "fancy";')
    post = first_post()
    r = run(t, ["herald", "check", post], home, env)
    equal(r.code, EX_NOINPUT, "exit code")
    tdir = f"{prefix}/share/herald/templates"
    want = (f"herald: {tdir}/fancy.html: No such file or directory (template = \"fancy\" in "
            f"herald.conf:{line}; templates is not set in herald.conf and no templates/ directory "
            f"is beside it: the default is herald's own, in {tdir}; set templates to the "
            "directory that holds fancy.html and fancy.txt)\n")
    expect(want in r.err, f"stderr:\n{r.err}\nwant:\n{want}")

    os.makedirs(os.path.join(home, "templates"))
    r = run(t, ["herald", "check", post], home, env)
    equal(r.code, EX_NOINPUT, "exit code with an empty templates/ beside")
    want = (f"herald: ./templates/fancy.html: No such file or directory (template = \"fancy\" in "
            f"herald.conf:{line}; templates is not set in herald.conf: the default is the "
            "templates/ directory beside it; set templates to the directory that holds "
            "fancy.html and fancy.txt)\n")
    expect(want in r.err, f"stderr:\n{r.err}\nwant:\n{want}")

    for ext in ("html", "txt"):
        with open(f"{tdir}/default.{ext}", encoding="utf-8") as f:
            layout = f.read()
        with open(os.path.join(home, "templates", f"fancy.{ext}"), "w", encoding="utf-8") as f:
            f.write(layout.replace("{{body}}", "Fancy layout. {{body}}", 1))
    s = t.server()
    point_at(conf, s)
    r = run(t, ["herald", "send", "--test", post], home, env)
    equal(r.code, EX_OK, "send --test with templates/ beside the config")
    html, text = parts(s.messages()[0])
    expect("Fancy layout." in html and "Fancy layout." in text, "the templates/ beside it won")


@test("a list the config names and that is missing: check, send, preview and subscribers check "
      "name the setting, its file and line, and the fix (exit 66); unset, the default is named")
def test_missing_list(t):
    s = t.server()
    conf = t.config(s)
    t.post()
    line = conf_line(conf, r'subscribers = "subs.csv";')
    want = (f"herald: {t.dir}/subs.csv: No such file or directory (subscribers = \"subs.csv\" in "
            f"{conf}:{line}; create the list, a CSV file with a header row such as \"email,name\", "
            "or set subscribers to the one you have)\n")
    post = t.path("issue-1.md")
    for args in (("check", post), ("send", post), ("send", "--test", post),
                 ("preview", post, "-o", t.path("pv"), "--no-screenshots"),
                 ("subscribers", "check")):
        r = t.herald(*args)
        equal((r.code, r.err), (EX_NOINPUT, want), " ".join(args[:2]))
    equal(s.received(), [], "nothing sent")

    conf = t.config(s, {"subscribers": None})
    r = t.herald("check", post)
    equal((r.code, r.err), (EX_NOINPUT,
          f"herald: {t.dir}/subscribers.csv: No such file or directory (subscribers is not set "
          f"in {conf}: the default is subscribers.csv beside it; create the list, a CSV file with "
          "a header row such as \"email,name\", or set subscribers to the one you have)\n"),
          "the default, unset")


@test("a state_dir that cannot be created: send and bounces scan say which setting names it "
      "(exit 73)")
def test_state_dir_named(t):
    s = t.server()
    t.subscribers("email,name\nann@example.net,Ann\n")
    t.post()
    conf = t.config(s, {"state_dir": "/proc/nope/state"})
    line = conf_line(conf, r'state_dir = "/proc/nope/state";')
    want = ("herald: /proc/nope: cannot create state directory: No such file or directory "
            f"(state_dir = \"/proc/nope/state\" in {conf}:{line})\n")
    r = t.send()
    equal((r.code, r.err), (EX_CANTCREAT, want), "send")
    os.makedirs(t.path("mail", "new"))
    os.makedirs(t.path("mail", "cur"))
    os.makedirs(t.path("mail", "tmp"))
    r = t.herald("bounces", "scan", "maildir:" + t.path("mail"))
    equal((r.code, r.err), (EX_CANTCREAT, want), "bounces scan")
    equal(s.received(), [], "nothing sent")


@test("no herald.conf where herald runs: the message says -c FILE or herald init")
def test_no_config(t):
    r = run(t, [HERALD, "check", "post.md"], t.cwd, clean_env({"HERALD_SECRET": SECRET}))
    equal((r.code, r.err), (EX_NOINPUT, "herald: herald.conf: No such file or directory (use -c "
                            "FILE, or start a newsletter here with: herald init)\n"), "no config")


@test("make demo (tests/demo.sh): no SMTP transcript before the where-to-look block, the "
      "transcript in the log it names, a mail reader that is installed or how to get one, and "
      "the dry-run command it prints works when pasted")
def test_demo(t):
    out = t.path("demo-out")
    r = run(t, ["/bin/sh", "tests/demo.sh"], ROOT, clean_env({"HERALD": HERALD, "DEMO_OUT": out}))
    equal(r.code, EX_OK, "demo exit code")
    expect(not TRANSCRIPT.search(r.out + r.err), "no SMTP transcript on the terminal")
    expect(f"SMTP transcript: {out}/send.log" in r.out, r.out)
    with open(os.path.join(out, "send.log")) as f:
        expect(re.search(r"^smtp 1 > MAIL FROM:<joy@example.org>", f.read(), re.M),
               "send.log holds the transcript")
    lines = r.out.splitlines()
    expect(re.match(r"2026-11-30-weekly: sent 7, bounced 0, deferred 0", lines[1]), lines[1])
    reader = next((m for m in ("neomutt", "mutt") if shutil.which(m)), None)
    if reader:
        expect(f"             read them:  {reader} -f {out}/maildir" in lines, r.out)
    else:
        expect(f"             read them:  apt-get install mutt, then: mutt -f {out}/maildir"
               in lines, r.out)
    equal(lines[-2], "  again without sending (the secret is the demo's, given on the line):",
          "the line before the command")
    cmd = lines[-1].strip()
    shown = os.path.relpath(HERALD, ROOT) if HERALD.startswith(ROOT + os.sep) else HERALD
    equal(cmd, f"HERALD_SECRET=demo-secret {shown} -c {out}/herald.conf send "
          f"examples/2026-11-30-weekly.md --dry-run {out}/dry", "the printed command")
    r = run(t, cmd, ROOT, clean_env(), shell=True)
    equal(r.code, EX_OK, "the pasted command's exit code")
    equal(len([n for n in os.listdir(os.path.join(out, "dry")) if n.endswith(".eml")]), 7,
          "messages written")


@test("the docs travel with the repo: every relative link in README.md, tests/README.md and "
      "docs/*.md names a "
      "file in the tree, and README and the man page point to docs/ARCHITECTURE.md")
def test_docs_links(t):
    docs = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "tests", "README.md")] + [
        os.path.join(ROOT, "docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
        if n.endswith(".md")]
    bad = []
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"", text):
            target = target[0] or target[1]
            if re.match(r"[a-z]+:|#", target):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split("#")[0]))
            if not path.startswith(ROOT + os.sep) or not os.path.exists(path):
                bad.append(f"{os.path.relpath(doc, ROOT)}: {target}")
    equal(bad, [], "links that leave the tree or name nothing")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        expect("(docs/ARCHITECTURE.md)" in f.read(), "README links docs/ARCHITECTURE.md")
    with open(os.path.join(ROOT, "man", "herald.1"), encoding="utf-8") as f:
        expect("ARCHITECTURE.md" in f.read(), "the man page names docs/ARCHITECTURE.md")


def help_exit_codes(text):
    """[(code, meaning)] from the "Exit status:" block of --help: a code
    at the start of its line, its meaning on as many lines as it takes."""
    block = text[text.index("Exit status:\n") + len("Exit status:\n"):]
    items = []
    for line in block.split("\n"):
        m = re.match(r"  (\d+) +(\S.*)", line)
        if m:
            items.append([int(m.group(1)), m.group(2)])
        elif line.startswith("      ") and items:
            items[-1][1] += " " + line.strip()
        else:
            break
    return [tuple(i) for i in items]


def man_exit_codes(page):
    """[(code, meaning)] from the .TP items of a man page's EXIT STATUS."""
    with open(page, encoding="utf-8") as f:
        roff = f.read()
    sect = roff[roff.index(".SH EXIT STATUS\n"):]
    sect = sect[len(".SH EXIT STATUS\n"):]
    sect = sect[:sect.index("\n.SH ")] if "\n.SH " in sect else sect
    items = []
    for item in sect.split(".TP\n")[1:]:
        tag, _, body = item.partition("\n")
        text = " ".join(l for l in body.split("\n") if l and not l.startswith("."))
        text = re.sub(r"\\f[BIRP]|\\&", "", text).replace("\\-", "-").replace("\\(dq", '"')
        items.append((int(re.sub(r"\\f[BIRP]", "", tag).split()[-1]), " ".join(text.split())))
    return items


@test("exit codes are written once: herald(1)'s EXIT STATUS lists exactly the codes and meanings "
      "herald --help prints, the sysexits values, and README points there instead of a table")
def test_exit_codes_once(t):
    r = run(t, [HERALD, "--help"], t.cwd, clean_env())
    equal(r.code, EX_OK, "--help exit code")
    shown = help_exit_codes(r.out)
    equal([c for c, _ in shown], [0, 64, 65, 66, 69, 70, 71, 73, 74, 75, 78],
          "the codes --help lists (sysexits.h)")
    equal(man_exit_codes(os.path.join(ROOT, "man", "herald.1")), shown,
          "herald(1) EXIT STATUS against --help")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    expect(not re.search(r"^\| *6[4-9] *\|", readme, re.M), "README has no exit-code table")
    expect("herald(1)" in readme, "README points to herald(1)")


@test("make install puts herald.conf(5) where man finds it, beside herald(1), and the guides "
      "in share/doc/herald; make uninstall takes every one of them away again")
def test_install_man_pages(t):
    prefix = install(t)
    env = clean_env({"MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    for section, name, want in (("1", "herald", "EXIT STATUS"),
                                ("5", "herald.conf", "web.trusted_proxies")):
        r = run(t, ["man", "-M", os.path.join(prefix, "share/man"), section, name], t.cwd, env)
        equal(r.code, 0, f"man {section} {name}: exit code")
        expect(want in r.out, f"man {section} {name} shows {want}")
    r = run(t, ["make", "--no-print-directory", "uninstall", f"PREFIX={prefix}", "DESTDIR="],
            ROOT, clean_env())
    equal(r.code, 0, "make uninstall exit code")
    left = sorted(os.path.relpath(os.path.join(d, f), prefix)
                  for d, _, files in os.walk(prefix) for f in files)
    equal(left, [], "files left after make uninstall")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
