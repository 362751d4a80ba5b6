#!/usr/bin/env bash
# Prints the README's "Reliability" table from a `make test` log: one row per
# summary line the fault, hostile-input and log-scan tests print —
#   fault <name>: requests N, lost L, conflicting C
#   hostile: N cases, M as expected
#   secrets in logs: N lines of demo and bench at debug, L leaks
# — with the test file that printed it and a verdict (ok when nothing was
# lost, conflicting, unexpected or leaked). Exit 1 when a line is not ok or
# none is found.
#
#   scripts/reliability-table.sh [LOG]   (default .services/go-test.log)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=${1:-$ROOT/.services/go-test.log}
[ -r "$LOG" ] || { echo "reliability-table: no test log at $LOG (run make test)" >&2; exit 1; }

awk '
function row(file, what, result, ok) {
	printf "| %s | %s | `%s` | %s |\n", what, result, file, ok ? "ok" : "**FAILED**"
	n++
	if (!ok) bad++
}
BEGIN {
	print "| Fault or input class | Result | Test file | |"
	print "|---|---|---|---|"
}
# t.Log lines: "    file_test.go:123: fault store-outage: requests 6000, lost 0, conflicting 0"
match($0, /^ +[a-z_]+_test\.go:[0-9]+: (fault [a-z0-9-]+|hostile|secrets in logs): /) {
	line = substr($0, RSTART, RLENGTH)
	sub(/^ +/, "", line)
	file = line; sub(/:.*/, "", file)
	rest = substr($0, RSTART + RLENGTH)
	what = line; sub(/^[^:]+:[0-9]+: /, "", what); sub(/: $/, "", what)
	if (what ~ /^fault /) {
		sub(/^fault /, "", what)
		ok = (rest ~ /lost 0, conflicting 0/)
	} else if (what == "hostile") {
		what = "hostile input catalogue"
		split(rest, a, /[ ,]+/) # N cases M as expected
		ok = (a[1] + 0 >= 40 && a[1] == a[3])
	} else {
		ok = (rest ~ / 0 leaks/)
	}
	sub(/ \(.*\)$/, "", rest)
	row(file, what, rest, ok)
}
END {
	if (n == 0) { print "reliability-table: no summary line in the log" > "/dev/stderr"; exit 1 }
	if (bad) exit 1
}' "$LOG"
