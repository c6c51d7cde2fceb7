#!/bin/sh
# demo.sh: runs echo_client against echo_server and checks both ends.
#
#   sh examples/demo.sh BUILD_DIR [CONNECTIONS [SECONDS [MESSAGE_BYTES]]]
#
# BUILD_DIR is the CMake build directory (or the directory holding the two
# programs). Builds nothing. Starts the server on a free loopback port with
# one worker thread per CPU, runs the client (default 200 connections for 3
# seconds with 1 KiB messages), prints the client's verified result, stops
# the server with SIGTERM and checks that it exits 0. Exits non-zero if
# anything fails. Needs no terminal. ECHO_SERVER_ARGS, if set, replaces the
# server's --threads option (for example ECHO_SERVER_ARGS="--threads 4 --reuseport").
#
# Windows builds under Wine: CMIO_DEMO_RUNNER=wine runs the .exe programs,
# and CMIO_DEMO_STOP_SIGNAL=INT stops the server. Wine hands SIGINT to the
# program as a console Ctrl-C, which the C runtime passes to its SIGINT
# handler; SIGTERM has no Windows counterpart and ends the process at once.

set -u
me=demo
runner=${CMIO_DEMO_RUNNER:-}
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [CONNECTIONS [SECONDS [MESSAGE_BYTES]]]" >&2; exit 2; }
conns=${2:-200}
secs=${3:-3}
size=${4:-1024}
stop=${CMIO_DEMO_STOP_SIGNAL:-TERM}

find_programs "$1"
make_tmp

cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
server_args=${ECHO_SERVER_ARGS:-"--threads $cpus"}

# shellcheck disable=SC2086 # server_args is a list of options
start_server $server_args
echo "demo: server listening on 127.0.0.1:$port (pid $server_pid, $server_args)"
echo "demo: client: $conns connections, $secs s, $size-byte messages"

$runner "$bindir/echo_client$exe" -a 127.0.0.1 -p "$port" -c "$conns" -d "$secs" -s "$size" \
    </dev/null >"$tmp/client.out" 2>"$tmp/client.err"
client_status=$?
sed 's/^/demo:   /' "$tmp/client.err"
if [ "$client_status" -ne 0 ]; then
    cat "$tmp/server.err" >&2
    die "echo_client exited with status $client_status"
fi
[ -s "$tmp/client.out" ] || die "echo_client printed no result"
echo "demo: result: $(tr -d '\r' <"$tmp/client.out")"

kill -"$stop" "$server_pid" 2>/dev/null || die "the server was gone before SIG$stop"
wait_with_timeout "$server_pid" 100
server_status=$status
server_pid=
sed 's/^/demo:   /' "$tmp/server.err"
[ "$server_status" -eq 0 ] || die "echo_server exited with status $server_status after SIG$stop"
echo "demo: server exited 0 after SIG$stop"
echo "demo: OK"
