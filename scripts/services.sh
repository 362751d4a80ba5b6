#!/usr/bin/env bash
# Real services for the integration tests: Apache Kafka (KRaft, one node),
# PostgreSQL and a transparency-log witness (litewitness, scripts/witness.sh),
# all on 127.0.0.1, all throwaway, state under ./.services/.
#
#   scripts/services.sh up      start both (idempotent; quick when running)
#   scripts/services.sh down    stop both, keep their data
#   scripts/services.sh clean-kafka
#                               stop Kafka and drop its data (the tests leave
#                               thousands of partitions behind; a benchmark
#                               wants an empty cluster); the next up formats it
#   scripts/services.sh status  say what runs where (exit 0 only if both run)
#   scripts/services.sh env     print the exports the Go tests read
#   scripts/services.sh pg-up | pg-down | pg-kill
#                               PostgreSQL alone; with CERTLESS_SERVICES_DIR and
#                               CERTLESS_PG_PORT set, a second cluster the store
#                               outage test stops (pg-kill: immediate shutdown)
#   scripts/services.sh cluster-up | cluster-down | cluster-clean | cluster-env
#                               a separate three-node KRaft cluster (replication
#                               factor 3, min.insync.replicas 2) for the Kafka
#                               node-loss test; cluster-up also restarts a node
#                               that died, and the test starts it itself
#
# Kafka comes from Maven Central (org.apache.kafka:kafka_2.13, version in
# scripts/kafka/pom.xml) and runs from the copied jars; PostgreSQL from the
# Debian packages, installed with apt-get when missing and running as root;
# likewise Debian's chromium (and a CJK font) for the browser tests.
#
# Kafka has two client listeners on one node: PLAINTEXT (no authentication,
# the harness's admin path and what most tests use) and SASL_SSL (SCRAM-SHA-512
# over TLS from a throwaway CA made here, with the StandardAuthorizer, for the
# tests of credentials and ACLs).
#
# Ports: CERTLESS_KAFKA_PORT (19092), CERTLESS_KAFKA_SECURE_PORT (19094),
# CERTLESS_KAFKA_CONTROLLER_PORT (19093), CERTLESS_PG_PORT (15432).
# State: CERTLESS_SERVICES_DIR (./.services).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CERTLESS_SERVICES_DIR:-$ROOT/.services}
KAFKA_PORT=${CERTLESS_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${CERTLESS_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_SECURE_PORT=${CERTLESS_KAFKA_SECURE_PORT:-19094}
# SCRAM users added when the storage is formatted: the tests' admin (creates
# users, topics and ACLs over SASL_SSL) and one for a broker process.
KAFKA_ADMIN_USER=certless-admin
KAFKA_BROKER_USER=certless-broker
PG_PORT=${CERTLESS_PG_PORT:-15432}
PG_ROLE=certless
PG_PASSWORD=certless
KAFKA_HEAP=${CERTLESS_KAFKA_HEAP:--Xms256m -Xmx512m}

POM=$ROOT/scripts/kafka/pom.xml
KDIR=$STATE/kafka
PGBASE=$STATE/pg

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
is_root() { [ "$(id -u)" -eq 0 ]; }

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM"; }
kafka_addr() { echo "127.0.0.1:$KAFKA_PORT"; }
kafka_secure_addr() { echo "127.0.0.1:$KAFKA_SECURE_PORT"; }
pg_dsn() { echo "postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres?sslmode=disable"; }

# port_open reports whether something accepts connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# closefds closes every descriptor above 2 of the current subshell, so a
# daemon started from it keeps neither the lock nor a pipe of whoever ran
# this script (a CI runner waits for its pipes to close).
closefds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
	done
}

# lock serialises up/down between concurrent callers (two `make test` in one
# tree). Daemons are started through closefds so they do not hold it.
lock() {
	mkdir -p "$STATE"
	exec 9>"$STATE/.lock"
	flock -w 900 9 || die "another services.sh holds $STATE/.lock"
}

apt_install() {
	is_root || die "$* missing; install it (apt-get install $*) or run as root"
	log "installing $* with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- Kafka

java_bin() {
	if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
		echo "$JAVA_HOME/bin/java"
	else
		command -v java || true
	fi
}

ensure_java() {
	[ -n "$(java_bin)" ] || apt_install openjdk-17-jre-headless
	local v
	v=$("$(java_bin)" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')
	[ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Kafka $(kafka_version) needs Java 17 or newer, found ${v:-none}"
	command -v mvn >/dev/null || apt_install maven
}

# kafka_libs copies kafka_2.13 and its runtime dependencies into
# $KDIR/libs, once per pom.xml content.
kafka_libs() {
	local stamp
	stamp=$(sha256sum "$POM" | cut -c1-64)
	if [ -f "$KDIR/libs/.stamp" ] && [ "$(cat "$KDIR/libs/.stamp")" = "$stamp" ]; then
		return
	fi
	local t0 tmp
	t0=$(now)
	log "resolving Kafka $(kafka_version) jars from Maven Central"
	tmp=$KDIR/libs.tmp
	rm -rf "$tmp"
	mvn -q -B -f "$POM" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null >"$KDIR/mvn.log" 2>&1 ||
		{ cat "$KDIR/mvn.log" >&2; die "maven could not resolve Kafka (log: $KDIR/mvn.log)"; }
	ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "maven copied no kafka_2.13 jar"
	echo "$stamp" >"$tmp/.stamp"
	rm -rf "$KDIR/libs"
	mv "$tmp" "$KDIR/libs"
	log "$(ls "$KDIR/libs" | wc -l) jars in $KDIR/libs ($(since "$t0"))"
}

# secret FILE prints the random password in $KDIR/secrets/FILE, made once.
secret() {
	local f=$KDIR/secrets/$1
	if [ ! -s "$f" ]; then
		mkdir -p "$KDIR/secrets"
		chmod 700 "$KDIR/secrets"
		# Letters and digits only: the value goes into properties, the
		# --add-scram syntax and shell exports unquoted.
		(umask 077 && head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$f.tmp")
		mv "$f.tmp" "$f"
	fi
	cat "$f"
}

# kafka_tls makes, once, a throwaway CA ($KDIR/tls/ca.pem, what the tests
# trust) and a broker certificate for 127.0.0.1/localhost signed by it, in
# a PKCS12 keystore for the SASL_SSL listener.
kafka_tls() {
	local d=$KDIR/tls
	[ -s "$d/broker.p12" ] && [ -s "$d/ca.pem" ] && return
	command -v openssl >/dev/null || apt_install openssl
	local t0 pass
	t0=$(now)
	pass=$(secret keystore.password)
	rm -rf "$d.tmp"
	mkdir -p "$d.tmp"
	(
		cd "$d.tmp"
		openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
			-subj '/CN=certless throwaway test CA' -keyout ca.key -out ca.pem \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
		openssl req -newkey rsa:2048 -nodes -sha256 -subj '/CN=127.0.0.1' \
			-keyout broker.key -out broker.csr
		printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
			'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
			'extendedKeyUsage=serverAuth' >broker.ext
		openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-days 3650 -sha256 -extfile broker.ext -out broker.pem
		openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key \
			-certfile ca.pem -out broker.p12 -passout "pass:$pass"
		rm -f broker.csr broker.ext ca.srl
	) >"$KDIR/tls.log" 2>&1 || { cat "$KDIR/tls.log" >&2; die "could not make the test CA and broker keystore"; }
	# The CA key is kept so a test could sign more certificates; all of it
	# is throwaway and trusted by nothing but the tests.
	rm -rf "$d"
	mv "$d.tmp" "$d"
	log "made a throwaway CA and broker keystore in $d ($(since "$t0"))"
}

# kafka_config writes the broker configuration to $KDIR/config/$1
# (server.properties unless given).
kafka_config() {
	mkdir -p "$KDIR/config"
	cat >"$KDIR/config/${1:-server.properties}" <<EOF
# Written by scripts/services.sh: a one-node KRaft cluster for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
# SASL_SSL: SCRAM-SHA-512 users (the first ones added at format time, more
# by the tests' admin), TLS with the throwaway CA's broker certificate.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KDIR/tls/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$(secret keystore.password)
listener.name.sasl_ssl.ssl.client.auth=none
# ACLs: the standard KRaft authorizer, deny what no ACL allows. Super users:
# User:ANONYMOUS is every client of the PLAINTEXT and CONTROLLER listeners,
# i.e. this broker talking to its controller and to itself, and the test
# harness's own admin path: those listeners are on loopback only and carry
# no authentication, so existing tests run unaffected by ACLs. On SASL_SSL
# only the two format-time users are super users; every other principal
# gets exactly what ACLs grant it.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:$KAFKA_BROKER_USER;User:$KAFKA_ADMIN_USER
log.dirs=$KDIR/data
# Tests create their topics explicitly, as production does.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# One node: internal topics with one replica and few partitions, so the first
# consumer group or transaction does not wait for 50 partitions to appear.
$(internal_topics 1 1)
group.initial.rebalance.delay.ms=0
# Small machine.
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
EOF
	kafka_log4j
}

# kafka_log4j writes the logging configuration both clusters use.
kafka_log4j() {
	mkdir -p "$KDIR/config"
	cat >"$KDIR/config/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.requests.name = kafka.request.logger
logger.requests.level = WARN
EOF
}

# kafka_launch CONFIG LOG PIDFILE starts a Kafka node as a daemon.
kafka_launch() {
	# shellcheck disable=SC2086 # KAFKA_HEAP holds several JVM options
	(
		closefds
		exec setsid nohup "$(java_bin)" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
			-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
			-Dlog4j2.configurationFile="$KDIR/config/log4j2.properties" \
			-cp "$KDIR/libs/*" kafka.Kafka "$1"
	) </dev/null >>"$2" 2>&1 &
	echo $! >"$3"
}

# internal_topics RF MIN_ISR prints the internal topics' settings: that many
# replicas, four partitions.
internal_topics() {
	local t
	echo "offsets.topic.replication.factor=$1"
	echo "offsets.topic.num.partitions=4"
	for t in transaction.state.log share.coordinator.state.topic; do
		echo "$t.replication.factor=$1"
		echo "$t.min.isr=$2"
		echo "$t.num.partitions=4"
	done
}

# kafka_java runs a Kafka main class with the resolved jars.
kafka_java() {
	"$(java_bin)" -cp "$KDIR/libs/*" \
		-Dlog4j2.configurationFile="$KDIR/config/log4j2.properties" \
		-Djava.awt.headless=true "$@"
}

kafka_pid() {
	local pid
	pid=$(cat "$KDIR/kafka.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

# kafka_format_stamp identifies what the storage was formatted from: the
# configuration and the SCRAM users. Storage formatted otherwise (by an older
# version of this script, without SCRAM users, or for other listeners) is
# throwaway and formatted again.
kafka_format_stamp() {
	{
		cat "$KDIR/config/server.properties"
		echo "scram $KAFKA_ADMIN_USER $(secret admin.password) $KAFKA_BROKER_USER $(secret broker.password)"
	} | sha256sum | cut -c1-64
}

kafka_format() {
	local stamp
	stamp=$(kafka_format_stamp)
	if [ -f "$KDIR/data/meta.properties" ] && [ "$(cat "$KDIR/format.stamp" 2>/dev/null)" = "$stamp" ]; then
		return
	fi
	[ -f "$KDIR/data/meta.properties" ] && log "Kafka storage was formatted for another configuration; formatting it again (test data is lost)"
	local id
	# A cluster id is a base64url UUID; 16 random bytes are one.
	id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	log "formatting Kafka storage (cluster $id)"
	rm -rf "$KDIR/data" "$KDIR/format.stamp"
	# --cluster-id=ID, not -t ID: an id starting with '-' (1 in 64) would
	# be read as an option. In KRaft the first SCRAM users must be added
	# here: without them nobody could log in on SASL_SSL to add more.
	kafka_java kafka.tools.StorageTool format --standalone \
		--cluster-id="$id" --config="$KDIR/config/server.properties" \
		--add-scram="SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$(secret admin.password)]" \
		--add-scram="SCRAM-SHA-512=[name=$KAFKA_BROKER_USER,password=$(secret broker.password)]" \
		>"$KDIR/format.log" 2>&1 ||
		{ cat "$KDIR/format.log" >&2; die "kafka storage format failed"; }
	echo "$stamp" >"$KDIR/format.stamp"
}

# kafka_call READ FRAME sends one request FRAME (printf escapes) to the
# broker and prints the first READ bytes of the answer as decimal numbers.
# Plain bash and od: nothing to build before the broker can be probed.
kafka_call() {
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "$3" >&3
		head -c "$2" <&3 | od -An -v -tu1' _ "${CALL_PORT:-$KAFKA_PORT}" "$1" "$2" 2>/dev/null
}

# kafka_ready [N] succeeds when a Metadata v4 request (no topics) is answered
# with our correlation id and at least N (1) live brokers, i.e. the broker has
# registered with the controller and serves clients.
#   request:  size=29 | api_key=3 | version=4 | correlation=0x6365 |
#             client_id="certless-ready" | topics=[] | allow_auto_create=0
#   response: size | correlation | throttle_ms | brokers count | ...
kafka_ready() {
	local out min=${1:-1}
	out=$(kafka_call 16 '\x00\x00\x00\x1d\x00\x03\x00\x04\x00\x00\x63\x65\x00\x0ecertless-ready\x00\x00\x00\x00\x00') || return 1
	# shellcheck disable=SC2086 # split od's numbers into $1..$16
	set -- $out
	[ $# -eq 16 ] && [ "$5 $6 $7 $8" = "0 0 99 101" ] &&
		[ $(((${13} << 24) | (${14} << 16) | (${15} << 8) | ${16})) -ge "$min" ]
}

# kafka_groups_ready succeeds when the group coordinator answers for every
# partition of __consumer_offsets (offsets.topic.num.partitions=4; the keys
# certless-warmup-0..3 hash to partitions 3, 0, 1, 2). On a new cluster the
# first FindCoordinator creates that topic, and until it is loaded group
# requests fail with COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR, so the
# first test to use a group would otherwise race the broker.
#   request:  size=44 | api_key=10 | version=1 | correlation=0x6366 |
#             client_id="certless-ready" | key="certless-warmup-N" | key_type=0
#   response: size | correlation | throttle_ms | error_code | ...
kafka_groups_ready() {
	local n out
	for n in 0 1 2 3; do
		out=$(kafka_call 14 "\\x00\\x00\\x00\\x2c\\x00\\x0a\\x00\\x01\\x00\\x00\\x63\\x66\\x00\\x0ecertless-ready\\x00\\x11certless-warmup-$n\\x00") || return 1
		# shellcheck disable=SC2086
		set -- $out
		[ $# -eq 14 ] && [ "$5 $6 $7 $8" = "0 0 99 102" ] && [ "${13} ${14}" = "0 0" ] || return 1
	done
}

kafka_up() {
	local t0 pid
	t0=$(now)
	mkdir -p "$KDIR"
	if pid=$(kafka_pid); then
		# Running: keep it if it runs the configuration this script writes
		# now, else (e.g. started by an older version without SASL_SSL)
		# restart it with the new one.
		kafka_config server.properties.want
		if cmp -s "$KDIR/config/server.properties.want" "$KDIR/config/server.properties" &&
			[ -f "$KDIR/format.stamp" ]; then
			rm -f "$KDIR/config/server.properties.want"
			kafka_wait "$pid" "$t0"
			return
		fi
		rm -f "$KDIR/config/server.properties.want"
		log "Kafka (pid $pid) runs an older configuration; restarting it"
		kafka_down
	fi
	for p in "$KAFKA_PORT" "$KAFKA_SECURE_PORT" "$KAFKA_CONTROLLER_PORT"; do
		port_open "$p" && die "port $p is taken by another process (not $KDIR); set CERTLESS_KAFKA_PORT / CERTLESS_KAFKA_SECURE_PORT / CERTLESS_KAFKA_CONTROLLER_PORT"
	done
	ensure_java
	kafka_libs
	kafka_tls
	kafka_config
	kafka_format
	log "starting Kafka $(kafka_version) on $(kafka_addr) (PLAINTEXT) and $(kafka_secure_addr) (SASL_SSL)"
	kafka_launch "$KDIR/config/server.properties" "$KDIR/kafka.log" "$KDIR/kafka.pid"
	pid=$(cat "$KDIR/kafka.pid")
	kafka_wait "$pid" "$t0"
	kafka_scram_users
}

# kafka_scram_users sets the admin's and the broker's SCRAM credentials
# through the PLAINTEXT super-user listener after each start. --add-scram
# only seeds them into an empty metadata log; a node restarted over a kept
# log was seen without them (every SASL_SSL login failing), so every start
# puts them back, with the passwords of .services/kafka/secrets.
kafka_scram_users() {
	local u f
	for u in "$KAFKA_ADMIN_USER:admin.password" "$KAFKA_BROKER_USER:broker.password"; do
		f=${u#*:}
		kafka_java kafka.admin.ConfigCommand --bootstrap-server "$(kafka_addr)" --alter \
			--add-config "SCRAM-SHA-512=[iterations=8192,password=$(secret "$f")]" \
			--entity-type users --entity-name "${u%%:*}" >>"$KDIR/scram.log" 2>&1 ||
			{ tail -20 "$KDIR/scram.log" >&2; die "setting the SCRAM credential of ${u%%:*} failed"; }
	done
}

kafka_wait() {
	local pid=$1 t0=$2 deadline=$((SECONDS + 120))
	until kafka_ready && kafka_groups_ready && port_open "$KAFKA_SECURE_PORT"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 40 "$KDIR/kafka.log" >&2 || true
			die "Kafka exited during start-up (log: $KDIR/kafka.log)"
		fi
		[ "$SECONDS" -lt "$deadline" ] || {
			tail -n 40 "$KDIR/kafka.log" >&2 || true
			die "Kafka did not serve metadata and group coordination within 120s (log: $KDIR/kafka.log)"
		}
		sleep 0.2
	done
	log "Kafka $(kafka_version) ready at $(kafka_addr), SASL_SSL at $(kafka_secure_addr), pid $pid ($(since "$t0"))"
}

kafka_down() {
	local pid
	pid=$(kafka_pid) || { rm -f "$KDIR/kafka.pid"; return; }
	log "stopping Kafka (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "Kafka did not stop within 60s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$KDIR/kafka.pid"
}

# ---------------------------------------------------------------- Kafka, three nodes

# A second, separate cluster for the node-loss test: three KRaft nodes, each
# broker and controller (a static quorum of three voters), PLAINTEXT on
# loopback only, replication factor 3 and min.insync.replicas 2, so one node
# may die with no acknowledged write lost and producers (acks=all) still
# served. Node N listens for clients on $((CLUSTER_BASE + 10 N + 1)) and for
# its controller on $((CLUSTER_BASE + 10 N + 2)); its state is
# $K3DIR/nodeN (data, kafka.pid, kafka.log). It shares the jars with the
# one-node cluster and is started only by `cluster-up`, not by `up`.
CLUSTER_BASE=${CERTLESS_KAFKA_CLUSTER_BASE:-19100}
K3DIR=$STATE/kafka3
CLUSTER_NODES="1 2 3"

node_port() { echo $((CLUSTER_BASE + 10 * $1 + 1)); }
node_controller_port() { echo $((CLUSTER_BASE + 10 * $1 + 2)); }
cluster_addrs() {
	local n out=""
	for n in $CLUSTER_NODES; do out="$out${out:+,}127.0.0.1:$(node_port "$n")"; done
	echo "$out"
}

node_pid() {
	local pid
	pid=$(cat "$K3DIR/node$1/kafka.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

node_config() {
	local n=$1 voters="" v
	for v in $CLUSTER_NODES; do voters="$voters${voters:+,}$v@127.0.0.1:$(node_controller_port "$v")"; done
	mkdir -p "$K3DIR/node$n"
	cat >"$K3DIR/node$n/server.properties" <<EOF
# Written by scripts/services.sh: node $n of a three-node KRaft cluster for
# the node-loss test.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(node_port "$n"),CONTROLLER://127.0.0.1:$(node_controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$n"),CONTROLLER://127.0.0.1:$(node_controller_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$K3DIR/node$n/data
auto.create.topics.enable=false
num.partitions=1
# One node may be lost with nothing acknowledged lost and writes still taken.
default.replication.factor=3
min.insync.replicas=2
$(internal_topics 3 2)
group.initial.rebalance.delay.ms=0
# A replica that stops fetching leaves the ISR soon, so acks=all writes do
# not wait long on a dead node.
replica.lag.time.max.ms=5000
num.network.threads=2
num.io.threads=2
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# cluster_format formats every node's storage once, with one cluster id.
cluster_format() {
	local stamp n id
	stamp=$(cat "$K3DIR"/node*/server.properties | sha256sum | cut -c1-64)
	if [ "$(cat "$K3DIR/format.stamp" 2>/dev/null)" = "$stamp" ]; then
		return
	fi
	id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	log "formatting the three-node cluster's storage (cluster $id)"
	for n in $CLUSTER_NODES; do
		rm -rf "$K3DIR/node$n/data"
		kafka_java kafka.tools.StorageTool format --cluster-id="$id" \
			--config="$K3DIR/node$n/server.properties" >"$K3DIR/node$n/format.log" 2>&1 ||
			{ cat "$K3DIR/node$n/format.log" >&2; die "formatting node $n failed"; }
	done
	echo "$stamp" >"$K3DIR/format.stamp"
}

node_start() {
	local n=$1
	log "starting Kafka node $n on 127.0.0.1:$(node_port "$n")"
	kafka_launch "$K3DIR/node$n/server.properties" "$K3DIR/node$n/kafka.log" "$K3DIR/node$n/kafka.pid"
}

# cluster_up starts whichever nodes are not running (all on the first call,
# the one a test killed afterwards) and waits until every node reports all
# three brokers and serves group coordination.
cluster_up() {
	local t0 n started="" deadline
	t0=$(now)
	ensure_java
	mkdir -p "$KDIR"
	kafka_libs
	kafka_log4j
	for n in $CLUSTER_NODES; do node_config "$n"; done
	cluster_format
	for n in $CLUSTER_NODES; do
		node_pid "$n" >/dev/null && continue
		port_open "$(node_port "$n")" && die "port $(node_port "$n") is taken by another process; set CERTLESS_KAFKA_CLUSTER_BASE"
		node_start "$n"
		started="$started $n"
	done
	deadline=$((SECONDS + 180))
	for n in $CLUSTER_NODES; do
		until CALL_PORT=$(node_port "$n") kafka_ready 3 && CALL_PORT=$(node_port "$n") kafka_groups_ready; do
			if ! node_pid "$n" >/dev/null; then
				tail -n 40 "$K3DIR/node$n/kafka.log" >&2 || true
				die "Kafka node $n exited during start-up (log: $K3DIR/node$n/kafka.log)"
			fi
			[ "$SECONDS" -lt "$deadline" ] || {
				tail -n 40 "$K3DIR/node$n/kafka.log" >&2 || true
				die "the three-node cluster was not ready within 180s (log: $K3DIR/node$n/kafka.log)"
			}
			sleep 0.2
		done
	done
	log "three-node Kafka ready at $(cluster_addrs)${started:+ (started:$started)} ($(since "$t0"))"
}

cluster_down() {
	local n pid
	for n in $CLUSTER_NODES; do
		pid=$(node_pid "$n") || { rm -f "$K3DIR/node$n/kafka.pid"; continue; }
		log "stopping Kafka node $n (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
	done
	for n in $CLUSTER_NODES; do
		pid=$(node_pid "$n") || continue
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$K3DIR/node$n/kafka.pid"
	done
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
	done
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
		dirname "$(readlink -f "$(command -v pg_ctl)")"
	fi
}

# pg_user is the OS account that runs the cluster: PostgreSQL refuses root.
pg_user() {
	if ! is_root; then
		id -un
	elif id postgres >/dev/null 2>&1; then
		echo postgres
	else
		id certless-pg >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin certless-pg
		echo certless-pg
	fi
}

as_pg() {
	if is_root; then
		(cd / && runuser -u "$(pg_user)" -- "$@")
	else
		"$@"
	fi
}

ensure_pg() {
	[ -n "$(pg_bindir)" ] && return
	if is_root; then
		# Only the binaries are wanted: no default cluster on port 5432.
		mkdir -p /etc/postgresql-common/createcluster.d
		echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/certless.conf
	fi
	apt_install postgresql
	[ -n "$(pg_bindir)" ] || die "postgresql installed but initdb/pg_ctl not found"
}

# pg_datadir places the cluster in .services/pg, or, when the cluster's OS
# user cannot reach the checkout (e.g. a clone under /root), in /tmp with
# .services/pg pointing there.
pg_datadir() {
	mkdir -p "$STATE"
	if [ -L "$PGBASE" ] || [ -d "$PGBASE/data" ]; then
		return
	fi
	if is_root && ! runuser -u "$(pg_user)" -- test -x "$STATE"; then
		local alt
		alt=/tmp/certless-pg-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
		log "$(pg_user) cannot reach $STATE; keeping the cluster in $alt"
		mkdir -p "$alt"
		rm -rf "$PGBASE"
		ln -s "$alt" "$PGBASE"
	else
		mkdir -p "$PGBASE"
	fi
	is_root && chown "$(pg_user):" "$(readlink -f "$PGBASE")"
	return 0
}

# pgdir is where the cluster really lives: the OS user that runs it may not
# be able to follow .services/pg through a checkout it cannot enter.
pgdir() { readlink -f "$PGBASE"; }

pg_running() {
	local bin
	bin=$(pg_bindir)
	[ -n "$bin" ] && [ -f "$PGBASE/data/PG_VERSION" ] &&
		as_pg "$bin/pg_ctl" -D "$(pgdir)/data" status >/dev/null 2>&1
}

pg_login() {
	PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$(pg_bindir)/psql" -X -q -A -t \
		-h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d postgres -c 'select version()' 2>/dev/null
}

pg_up() {
	local t0 bin
	t0=$(now)
	ensure_pg
	bin=$(pg_bindir)
	pg_datadir
	if ! pg_running; then
		if [ ! -f "$PGBASE/data/PG_VERSION" ]; then
			log "initialising PostgreSQL ($("$bin/postgres" --version | awk '{print $3}')) in $PGBASE/data"
			local real
			real=$(readlink -f "$PGBASE")
			rm -rf "$real/data"
			printf '%s\n' "$PG_PASSWORD" >"$real/pwfile"
			is_root && chown "$(pg_user):" "$real/pwfile"
			as_pg "$bin/initdb" -D "$real/data" -U "$PG_ROLE" --pwfile="$real/pwfile" \
				--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
				>"$real/initdb.log" 2>&1 || { cat "$real/initdb.log" >&2; die "initdb failed"; }
			rm -f "$real/pwfile"
			echo "include_if_exists = 'certless.conf'" >>"$real/data/postgresql.conf"
		fi
		port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set CERTLESS_PG_PORT"
		# Throwaway and loopback only: durability off for speed.
		as_pg tee "$(pgdir)/data/certless.conf" >/dev/null <<EOF
# Written by scripts/services.sh.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
		log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
		(
			closefds
			as_pg "$bin/pg_ctl" -D "$(pgdir)/data" -l "$(pgdir)/postgres.log" -w -t 60 start
		) </dev/null >/dev/null || { tail -n 30 "$PGBASE/postgres.log" >&2 || true; die "PostgreSQL did not start"; }
	fi
	local deadline=$((SECONDS + 60))
	until pg_login >/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || die "cannot log in as $PG_ROLE on 127.0.0.1:$PG_PORT (log: $PGBASE/postgres.log)"
		sleep 0.2
	done
	log "PostgreSQL ready at 127.0.0.1:$PG_PORT as $PG_ROLE ($(since "$t0"))"
}

pg_down() {
	pg_running || return 0
	log "stopping PostgreSQL"
	as_pg "$(pg_bindir)/pg_ctl" -D "$(pgdir)/data" -m fast -w -t 60 stop >/dev/null
}

# ---------------------------------------------------------------- commands

status() {
	local rc=0 pid
	if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
		echo "kafka      running  $(kafka_addr)  Kafka $(kafka_version), pid $pid, log $KDIR/kafka.log"
		if port_open "$KAFKA_SECURE_PORT"; then
			echo "kafka      running  $(kafka_secure_addr)  SASL_SSL (SCRAM-SHA-512), CA $KDIR/tls/ca.pem"
		else
			echo "kafka      no SASL_SSL listener on $(kafka_secure_addr); run scripts/services.sh up"
			rc=3
		fi
	else
		echo "kafka      stopped"
		rc=3
	fi
	if pg_running && port_open "$PG_PORT"; then
		echo "postgresql running  127.0.0.1:$PG_PORT  $(pg_dsn)"
	else
		echo "postgresql stopped"
		rc=3
	fi
	"$ROOT/scripts/witness.sh" status || rc=3
	return "$rc"
}

# chromium_bin prints the headless browser the browser tests drive.
chromium_bin() { command -v chromium || command -v chromium-browser || true; }

# ensure_chromium installs Debian's chromium (and a CJK font, so pages
# with Chinese labels render as an auditor sees them) when missing.
ensure_chromium() {
	if [ -z "$(chromium_bin)" ]; then
		local t0
		t0=$(now)
		apt_install chromium fonts-wqy-zenhei
		log "chromium installed ($(since "$t0"))"
	fi
	log "chromium ready: $(chromium_bin)"
}

print_env() {
	echo "export CERTLESS_TEST_KAFKA=$(kafka_addr)"
	if [ -n "$(chromium_bin)" ]; then
		echo "export CERTLESS_TEST_CHROMIUM=$(chromium_bin)"
	fi
	# The secured listener, once up has made its CA and admin password.
	if [ -s "$KDIR/tls/ca.pem" ] && [ -s "$KDIR/secrets/admin.password" ]; then
		echo "export CERTLESS_TEST_KAFKA_SECURE=$(kafka_secure_addr)"
		echo "export CERTLESS_TEST_KAFKA_CA=$KDIR/tls/ca.pem"
		echo "export CERTLESS_TEST_KAFKA_ADMIN_USER=$KAFKA_ADMIN_USER"
		echo "export CERTLESS_TEST_KAFKA_ADMIN_PASSWORD=$(cat "$KDIR/secrets/admin.password")"
	fi
	echo "export CERTLESS_TEST_POSTGRES='$(pg_dsn)'"
	# What the fault tests call to start, stop and restart services of their own.
	echo "export CERTLESS_TEST_SERVICES=$ROOT/scripts/services.sh"
	"$ROOT/scripts/witness.sh" env
}

case "${1:-}" in
up)
	lock
	t0=$(now)
	kafka_up
	pg_up
	"$ROOT/scripts/witness.sh" up
	ensure_chromium
	log "all services up ($(since "$t0")); for the tests: eval \"\$(scripts/services.sh env)\""
	;;
down)
	lock
	kafka_down
	pg_down
	"$ROOT/scripts/witness.sh" down
	;;
pg-up)
	lock
	pg_up
	;;
pg-down)
	lock
	pg_down
	;;
pg-kill)
	# An immediate shutdown: what a crash leaves, recovered at the next start.
	lock
	if pg_running; then
		log "killing PostgreSQL (immediate shutdown)"
		as_pg "$(pg_bindir)/pg_ctl" -D "$(pgdir)/data" -m immediate -w -t 60 stop >/dev/null
	fi
	;;
cluster-up)
	lock
	cluster_up
	;;
cluster-down)
	lock
	cluster_down
	;;
cluster-clean)
	lock
	cluster_down
	rm -rf "${K3DIR:?}"
	log "the three-node cluster's data dropped"
	;;
cluster-env)
	echo "export CERTLESS_TEST_KAFKA_CLUSTER=$(cluster_addrs)"
	echo "export CERTLESS_TEST_KAFKA_CLUSTER_DIR=$K3DIR"
	;;
clean-kafka)
	lock
	kafka_down
	rm -rf "${KDIR:?}/data" "$KDIR/format.stamp"
	log "Kafka's data dropped; 'up' formats an empty cluster"
	;;
status) status ;;
env) print_env ;;
*)
	echo "usage: $0 up|down|clean-kafka|status|env|pg-up|pg-down|pg-kill|cluster-up|cluster-down|cluster-clean|cluster-env" >&2
	exit 2
	;;
esac
