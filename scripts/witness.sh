#!/usr/bin/env bash
# A real C2SP tlog-witness for the integration tests: litewitness from
# filippo.io/torchwood (written by others, not by us), on 127.0.0.1, its
# Ed25519 key in an ssh-agent of its own, state under .services/witness/.
#
#   scripts/witness.sh up                  install, create the key, start
#                                          ssh-agent and litewitness (idempotent)
#   scripts/witness.sh down                stop both, keep key and database
#   scripts/witness.sh status              exit 0 only if litewitness answers
#   scripts/witness.sh env                 print the exports the Go tests read
#   scripts/witness.sh add-log ORIGIN VKEY register a log (origin and Ed25519
#                                          note verifier key) with witnessctl
#
# litewitness and witnessctl are installed with `go install ...@v0.6.1` into
# .services/bin; the key is made with ssh-keygen. witnessctl writes the same
# SQLite database litewitness reads on every request, so a log added while
# litewitness runs is known at once.
#
# Port: CERTLESS_WITNESS_PORT (17380). Witness name: CERTLESS_WITNESS_NAME
# (certless.test/litewitness). State: CERTLESS_SERVICES_DIR (./.services).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CERTLESS_SERVICES_DIR:-$ROOT/.services}
PORT=${CERTLESS_WITNESS_PORT:-17380}
NAME=${CERTLESS_WITNESS_NAME:-certless.test/litewitness}
TORCHWOOD=filippo.io/torchwood
TORCHWOOD_VERSION=v0.6.1

BIN=$STATE/bin
WDIR=$STATE/witness
KEY=$WDIR/witness_key
DB=$WDIR/litewitness.db
LOG=$WDIR/litewitness.log

log() { printf 'witness: %s\n' "$*" >&2; }
die() { printf 'witness: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# A unix socket path has at most 107 bytes; a deep checkout moves it to /tmp.
SOCK=$WDIR/agent.sock
if [ "${#SOCK}" -gt 100 ]; then
	SOCK=/tmp/certless-witness-$(printf '%s' "$WDIR" | sha256sum | cut -c1-12).sock
fi

addr() { echo "127.0.0.1:$PORT"; }
url() { echo "http://$(addr)"; }

# port_open reports whether something accepts connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# closefds closes every descriptor above 2 of the current subshell, so a
# daemon started from it keeps neither the lock nor a pipe of whoever ran
# this script (a CI runner waits for its pipes to close). As in services.sh.
closefds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
	done
}

# lock serialises up/down between concurrent callers. Its own file and
# descriptor: services.sh may hold $STATE/.lock on fd 9 while it calls us.
lock() {
	mkdir -p "$WDIR"
	exec 8>"$WDIR/.lock"
	flock -w 300 8 || die "another witness.sh holds $WDIR/.lock"
}

# ---------------------------------------------------------------- install

installed() {
	[ -x "$BIN/litewitness" ] && [ -x "$BIN/witnessctl" ] || return 1
	command -v go >/dev/null || return 0 # cannot check; use what is there
	local b
	for b in litewitness witnessctl; do
		go version -m "$BIN/$b" 2>/dev/null |
			awk -v m="$TORCHWOOD" -v v="$TORCHWOOD_VERSION" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }' ||
			return 1
	done
}

ensure_installed() {
	installed && return
	command -v go >/dev/null || die "go is not on PATH; it installs litewitness"
	local t0
	t0=$(now)
	log "installing litewitness and witnessctl ($TORCHWOOD $TORCHWOOD_VERSION) into $BIN"
	mkdir -p "$BIN" "$WDIR"
	(cd "$WDIR" && GOBIN=$BIN GOWORK=off GOFLAGS=-buildvcs=false go install \
		"$TORCHWOOD/cmd/litewitness@$TORCHWOOD_VERSION" \
		"$TORCHWOOD/cmd/witnessctl@$TORCHWOOD_VERSION") </dev/null >"$WDIR/install.log" 2>&1 ||
		{ cat "$WDIR/install.log" >&2; die "go install $TORCHWOOD/cmd/litewitness@$TORCHWOOD_VERSION failed (log: $WDIR/install.log)"; }
	installed || die "go install succeeded but $BIN/litewitness is not $TORCHWOOD $TORCHWOOD_VERSION"
	log "installed ($(since "$t0"))"
}

# ---------------------------------------------------------------- key

ensure_key() {
	[ -f "$KEY" ] && [ -f "$KEY.pub" ] && return
	command -v ssh-keygen >/dev/null || die "ssh-keygen missing (apt-get install openssh-client)"
	mkdir -p "$WDIR"
	rm -f "$KEY" "$KEY.pub"
	ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$KEY" </dev/null
	log "created the witness key $KEY ($(fingerprint))"
}

# fingerprint is the key's SHA256: fingerprint, litewitness's -key.
fingerprint() { ssh-keygen -l -E sha256 -f "$KEY.pub" | awk '{ print $2 }'; }

# vkey is the witness's c2sp.org/signed-note verifier key for cosignature/v1:
#   <name>+hex(SHA-256(<name> || "\n" || 0x04 || pub)[:4])+base64(0x04 || pub)
# computed from the public key; `up` checks it against what litewitness says.
pubkey() { awk '{ print $2 }' "$KEY.pub" | base64 -d | tail -c 32; }
vkey() {
	local id b64
	id=$({ printf '%s\n\x04' "$NAME"; pubkey; } | sha256sum | cut -c1-8)
	b64=$({ printf '\x04'; pubkey; } | base64 -w0)
	echo "$NAME+$id+$b64"
}

# ---------------------------------------------------------------- ssh-agent

agent_pid() {
	local pid
	pid=$(cat "$WDIR/agent.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "ssh-agent -D -a $SOCK" || return 1
	echo "$pid"
}

agent_has_key() { SSH_AUTH_SOCK=$SOCK ssh-add -l -E sha256 2>/dev/null </dev/null | grep -qF "$(fingerprint)"; }

# agent_up starts the agent if needed and loads the key; it sets
# AGENT_FRESH=1 when it started a new agent (litewitness must reconnect).
AGENT_FRESH=0
agent_up() {
	local pid
	command -v ssh-agent >/dev/null && command -v ssh-add >/dev/null ||
		die "ssh-agent / ssh-add missing (apt-get install openssh-client)"
	if ! pid=$(agent_pid) || [ ! -S "$SOCK" ]; then
		[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
		rm -f "$SOCK"
		(
			closefds
			exec setsid nohup ssh-agent -D -a "$SOCK"
		) </dev/null >>"$WDIR/ssh-agent.log" 2>&1 &
		echo $! >"$WDIR/agent.pid"
		pid=$!
		local deadline=$((SECONDS + 10))
		until [ -S "$SOCK" ]; do
			kill -0 "$pid" 2>/dev/null || { tail -n 5 "$WDIR/ssh-agent.log" >&2; die "ssh-agent exited (log: $WDIR/ssh-agent.log)"; }
			[ "$SECONDS" -lt "$deadline" ] || die "ssh-agent made no socket $SOCK within 10s"
			sleep 0.1
		done
		AGENT_FRESH=1
	fi
	agent_has_key || SSH_AUTH_SOCK=$SOCK ssh-add -q "$KEY" </dev/null 2>>"$WDIR/ssh-agent.log" ||
		die "ssh-add $KEY failed (log: $WDIR/ssh-agent.log)"
}

agent_down() {
	local pid
	if pid=$(agent_pid); then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$WDIR/agent.pid" "$SOCK"
}

# ---------------------------------------------------------------- litewitness

lw_pid() {
	local pid
	pid=$(cat "$WDIR/litewitness.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$BIN/litewitness " || return 1
	echo "$pid"
}

# lw_args_match succeeds if the running litewitness serves this name, key,
# database, agent and port.
lw_args_match() {
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null |
		grep -qF -- "-name $NAME -key $(fingerprint) -db $DB -ssh-agent $SOCK -listen $(addr) "
}

# http_get PATH prints litewitness's answer (headers and body), plain bash.
http_get() {
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
		cat <&3' _ "$PORT" "$1" 2>/dev/null
}

# lw_ready succeeds when litewitness's index page shows our verifier key.
lw_ready() { http_get / | grep -qF "$(vkey)"; }

lw_stop() {
	local pid
	pid=$(lw_pid) || { rm -f "$WDIR/litewitness.pid"; return 0; }
	log "stopping litewitness (pid $pid)"
	kill -INT "$pid" 2>/dev/null || true # its clean shutdown signal
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "litewitness did not stop within 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$WDIR/litewitness.pid"
}

lw_up() {
	local t0 pid
	t0=$(now)
	ensure_installed
	ensure_key
	agent_up
	if pid=$(lw_pid); then
		if [ "$AGENT_FRESH" -eq 1 ] || ! lw_args_match "$pid"; then
			log "restarting litewitness (new ssh-agent or changed settings)"
			lw_stop
		fi
	fi
	if ! pid=$(lw_pid); then
		port_open "$PORT" && die "port $PORT is taken by another process; set CERTLESS_WITNESS_PORT"
		log "starting litewitness $TORCHWOOD_VERSION as $NAME on $(addr)"
		(
			closefds
			exec setsid nohup "$BIN/litewitness" -name "$NAME" -key "$(fingerprint)" \
				-db "$DB" -ssh-agent "$SOCK" -listen "$(addr)"
		) </dev/null >>"$LOG" 2>&1 &
		echo $! >"$WDIR/litewitness.pid"
		pid=$!
	fi
	local deadline=$((SECONDS + 30))
	until lw_ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$LOG" >&2 || true
			die "litewitness exited during start-up (log: $LOG)"
		fi
		[ "$SECONDS" -lt "$deadline" ] || {
			tail -n 20 "$LOG" >&2 || true
			die "litewitness did not show verifier key $(vkey) at $(url)/ within 30s (log: $LOG)"
		}
		sleep 0.1
	done
	log "litewitness ready at $(url), pid $pid, vkey $(vkey) ($(since "$t0"))"
}

# ---------------------------------------------------------------- commands

status() {
	local pid
	if pid=$(lw_pid) && lw_ready; then
		echo "litewitness running  $(addr)  $TORCHWOOD $TORCHWOOD_VERSION, pid $pid, vkey $(vkey), db $DB, log $LOG"
	else
		echo "litewitness stopped"
		return 3
	fi
}

print_env() {
	[ -f "$KEY.pub" ] || die "no witness key yet; run scripts/witness.sh up"
	printf 'export CERTLESS_TEST_WITNESS_URL=%q\n' "$(url)"
	printf 'export CERTLESS_TEST_WITNESS_VKEY=%q\n' "$(vkey)"
	printf 'export CERTLESS_TEST_WITNESSCTL=%q\n' "$BIN/witnessctl"
	printf 'export CERTLESS_TEST_WITNESS_DB=%q\n' "$DB"
}

# add_log ORIGIN VKEY registers a log at size 0 with its key; a log already
# known keeps its state and gains the key if it lacks it.
add_log() {
	local origin=$1 key=$2 out
	[ -n "$origin" ] && [ -n "$key" ] || die "usage: $0 add-log ORIGIN VKEY"
	ensure_installed
	mkdir -p "$WDIR"
	if ! out=$("$BIN/witnessctl" add-log -db "$DB" -origin "$origin" 2>&1 </dev/null); then
		case $out in
		*"UNIQUE constraint failed"*) log "log $origin is already known" ;;
		*) die "witnessctl add-log: $out" ;;
		esac
	fi
	if "$BIN/witnessctl" list-logs -db "$DB" </dev/null | grep -F "\"origin\":\"$origin\"" | grep -qF "\"$key\""; then
		log "log $origin already has key $key"
		return
	fi
	"$BIN/witnessctl" add-key -db "$DB" -origin "$origin" -key "$key" </dev/null >/dev/null 2>"$WDIR/witnessctl.err" ||
		die "witnessctl add-key: $(cat "$WDIR/witnessctl.err")"
	grep -v 'Added key' "$WDIR/witnessctl.err" >&2 || true # e.g. a name/origin mismatch warning
	log "registered log $origin with key $key"
}

case "${1:-}" in
up)
	lock
	lw_up
	;;
down)
	lock
	lw_stop
	agent_down
	;;
status) status ;;
env) print_env ;;
add-log) add_log "${2:-}" "${3:-}" ;;
*)
	echo "usage: $0 up|down|status|env|add-log ORIGIN VKEY" >&2
	exit 2
	;;
esac
