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

die() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [CONNECTIONS [SECONDS [MESSAGE_BYTES]]]" >&2; exit 2; }
build=$1
conns=${2:-200}
secs=${3:-3}
size=${4:-1024}
runner=${CMIO_DEMO_RUNNER:-}
stop=${CMIO_DEMO_STOP_SIGNAL:-TERM}

bindir=
exe=
for d in "$build/examples" "$build"; do
    if [ -x "$d/echo_server" ] && [ -x "$d/echo_client" ]; then
        bindir=$d
        break
    fi
    if [ -n "$runner" ] && [ -f "$d/echo_server.exe" ] && [ -f "$d/echo_client.exe" ]; then
        bindir=$d
        exe=.exe
        break
    fi
done
[ -n "$bindir" ] || die "no echo_server and echo_client in $build/examples or $build (build them first)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cmio-demo.XXXXXX") || die "mktemp"
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -KILL "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# Waits for process $1 (a child of this shell) to exit and sets $status to
# its exit status; kills it if it is still running after $2 tenths of a
# second. It must not run in a subshell ($(...)), which cannot wait for this
# shell's children. `kill -0`
# cannot tell an exited child (a zombie until waited for) from a live one, so
# a watchdog does the timing and `wait` collects the status.
wait_with_timeout() {
    rm -f "$tmp/reaped"
    (
        i=0
        while [ "$i" -lt "$2" ]; do
            [ -e "$tmp/reaped" ] && exit 0
            sleep 0.1
            i=$((i + 1))
        done
        [ -e "$tmp/reaped" ] || kill -KILL "$1" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    watchdog=$!
    wait "$1"
    status=$?
    : >"$tmp/reaped"
    wait "$watchdog" 2>/dev/null
}

cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
server_args=${ECHO_SERVER_ARGS:-"--threads $cpus"}

# Port 0: the server binds a free port and prints it, so there is no race
# with other programs picking ports.
# shellcheck disable=SC2086 # server_args is a list of options
$runner "$bindir/echo_server$exe" -a 127.0.0.1 -p 0 $server_args </dev/null >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!

port=
i=0
while [ "$i" -lt 100 ]; do
    # (tr: Windows text mode ends the line with CR LF)
    port=$(cat "$tmp/server.out" 2>/dev/null | tr -d '\r' |
           sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p')
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$port" ]; then
    cat "$tmp/server.err" >&2
    die "the server did not start listening"
fi
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
