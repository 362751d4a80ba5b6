#!/usr/bin/env bash
# Whole-system benchmark on the project's real Kafka and PostgreSQL
# (scripts/services.sh): for each round and each binary given, a fresh
# decision-store database, `certless serve` on the real cluster, and
# `certless bench --kafka` against it; prints throughput, latency and the
# broker's CPU time per request. Binaries alternate within a round, so a
# before/after comparison shares one sitting.
#
#   scripts/bench-real.sh [-r ROUNDS] [-n REQUESTS] [-d DATA_BIN | -D DATA_DIR] BIN [BIN...]
#
# e.g. git stash; go build -o /tmp/before ./cmd/certless; git stash pop
#      go build -o /tmp/after ./cmd/certless
#      scripts/bench-real.sh -r 3 /tmp/before /tmp/after
#
# The load generator is always the last binary given, so every broker is
# measured with the same client. Dev keys, records, agreements and
# configuration come from `certless demo --data` of DATA_BIN (default the
# first binary, so older binaries read it too) in a temporary folder, or
# are a copy of the data folder DATA_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3 requests=20000 databin= datadir=
while getopts "r:n:d:D:" o; do
	case $o in
	r) rounds=$OPTARG ;;
	n) requests=$OPTARG ;;
	d) databin=$OPTARG ;;
	D) datadir=$OPTARG ;;
	*) sed -n '2,19p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,19p' "$0"; exit 2; }
bins=("$@")
loadgen=${bins[-1]}

"$ROOT/scripts/services.sh" up >&2
eval "$("$ROOT/scripts/services.sh" env)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$datadir" ]; then
	cp -a "$datadir" "$work/data"
else
	"${databin:-${bins[0]}}" demo --data "$work/data" >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; exit 1; }
fi
http=127.0.0.1:18080

dsn_for() { # database name → DSN on the test cluster
	python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p._replace(path="/" + sys.argv[2]).geturl())' \
		"$CERTLESS_TEST_POSTGRES" "$1"
}

for round in $(seq 1 "$rounds"); do
	for i in "${!bins[@]}"; do
		bin=${bins[$i]}
		db=bench_$$_${round}_$i
		psql "$CERTLESS_TEST_POSTGRES" -qc "CREATE DATABASE $db" >/dev/null
		export CERTLESS_DATA=$work/data CERTLESS_KAFKA_BROKERS=$CERTLESS_TEST_KAFKA CERTLESS_DB=$(dsn_for "$db") \
			CERTLESS_HTTP_ADDR=$http CERTLESS_LOG_LEVEL=warn
		"$bin" serve >"$work/serve.log" 2>&1 &
		pid=$!
		for _ in $(seq 1 150); do curl -sf "http://$http/readyz" >/dev/null && break; sleep 0.2; done
		kill -0 "$pid" 2>/dev/null || { echo "$bin serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
		"$loadgen" bench --mode running --ceiling=false --kafka "$CERTLESS_TEST_KAFKA" --requests "$requests" >"$work/bench.txt" 2>&1 || echo "bench exited $?" >>"$work/bench.txt"
		ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
		kill -TERM "$pid"
		wait "$pid" || true
		unset CERTLESS_DB
		psql "$CERTLESS_TEST_POSTGRES" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
		echo "== round $round: $bin"
		grep -E 'throughput|latency|lost|decisions|bench exited' "$work/bench.txt"
		awk -v t="$ticks" -v h="$(getconf CLK_TCK)" -v n="$requests" \
			'BEGIN { printf "broker CPU  %.1f s, %.0f µs per request (start-up included)\n", t / h, t / h / n * 1e6 }'
	done
done
