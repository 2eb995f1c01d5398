#!/bin/sh
# make demo: send the example issue to the example list through a local
# capturing SMTP server (tests/smtpd.py), then show where everything went.
# Everything lands in ./demo-out (removed first; DEMO_OUT overrides, for
# the tests); nothing leaves this host.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
out=${DEMO_OUT:-$root/demo-out}
herald=${HERALD:-$root/build/herald}   # HERALD overrides, e.g. build-san/herald
# How the paths are shown: relative to the tree when they are in it, so
# the printed commands work when pasted where `make demo` ran.
show() { case $1 in "$root"/*) printf '%s' "${1#"$root"/}" ;; *) printf '%s' "$1" ;; esac; }
post=examples/2026-11-30-weekly.md
python=/usr/bin/python3

[ -x "$herald" ] || { echo "demo: $herald is missing: run make first" >&2; exit 1; }
[ -f "$post" ] || { echo "demo: $post is missing" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"

"$python" tests/smtpd.py --maildir "$out/maildir" --port-file "$out/smtpd.port" \
	--max-seconds 600 2>"$out/smtpd.log" &
smtpd=$!
stop_smtpd() {
	kill "$smtpd" 2>/dev/null || :
	wait "$smtpd" 2>/dev/null || :
}
trap stop_smtpd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

i=0
while [ ! -s "$out/smtpd.port" ]; do
	if ! kill -0 "$smtpd" 2>/dev/null || [ "$i" -ge 100 ]; then
		echo "demo: the SMTP server did not start:" >&2
		cat "$out/smtpd.log" >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 0.1
done
port=$(cat "$out/smtpd.port")

# libconfig string: escape backslashes and double quotes
q() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }

cat >"$out/herald.conf" <<EOF
# Written by tests/demo.sh: the example list, sent to a local test server.
from = "Joy <joy@example.org>";
reply_to = "letters@example.org";
list_id = "Weekly <weekly.example.org>";
subscribers = $(q "$root/subscribers/example.csv");
templates = $(q "$root/templates");
template = "default";
state_dir = $(q "$out/state");
unsubscribe = {
  url = "https://example.org/u?e={{email}}&t={{token}}";
  mailto = "unsubscribe@example.org";
  secret_env = "HERALD_SECRET";
};
smtp = {
  url = "smtp://127.0.0.1:$port";
  starttls = "never";
  timeout = 10;
};
retry = { attempts = 2; initial_delay = 0; max_delay = 0; };
test = { to = [ "me@example.org" ]; };
EOF

HERALD_SECRET=demo-secret
export HERALD_SECRET

o=$(show "$out") h=$(show "$herald")
echo "demo: $h -c $o/herald.conf send $post   (SMTP transcript: $o/send.log)"
status=0
"$herald" -v -c "$out/herald.conf" send "$post" >"$out/send.log" 2>&1 || status=$?
stop_smtpd
# The summary and any warning, without the transcript (-v: "smtp N > ...").
grep -v '^smtp [0-9]* [<>] ' "$out/send.log" || :

# A mail reader that can open the maildir, or how to get one.
reader=
for r in neomutt mutt; do
	if command -v "$r" >/dev/null 2>&1; then reader=$r; break; fi
done
n=$(find "$out/maildir/new" -name '*.eml' 2>/dev/null | wc -l | tr -d ' ')
echo
echo "demo: herald exited $status; the test server received $n message(s)."
echo "  messages:  $o/maildir/new/1.eml ... (one per subscriber, as received)"
if [ -n "$reader" ]; then
	echo "             read them:  $reader -f $o/maildir"
else
	echo "             read them:  apt-get install mutt, then: mutt -f $o/maildir"
	echo "             (or open a .eml file in any mail client; less shows the raw message)"
fi
echo "  envelopes: $o/maildir/envelope/*.json, transactions in $o/maildir/log.jsonl"
echo "  state:     $o/state/ (journal per post: *.journal; rejections: bounces.log)"
for j in "$out"/state/*.journal; do
	if [ -f "$j" ]; then echo "  journal:   $o/state/$(basename "$j") ($(wc -l <"$j" | tr -d ' ') line(s))"; fi
done
echo "  config:    $o/herald.conf; SMTP transcript: $o/send.log; server log: $o/smtpd.log"
echo "  again without sending (the secret is the demo's, given on the line):"
echo "    HERALD_SECRET=demo-secret $h -c $o/herald.conf send $post --dry-run $o/dry"
exit "$status"
