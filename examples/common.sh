# shellcheck shell=sh
# common.sh: what demo.sh and soak.sh share, in POSIX sh. Sourced, not run:
#
#   me=demo       # the name on the script's messages
#   runner=       # what runs the programs: empty, or wine for the .exe
#   . "$(dirname "$0")/common.sh"
#
# It provides die, find_programs, make_tmp (with a cleanup on exit that
# kills $server_pid and $client_pid, whichever is set), start_server and
# wait_with_timeout.

server_pid=
client_pid=

# shellcheck disable=SC2154 # $me is set by the script that sources this
die() {
    echo "$me: FAILED: $*" >&2
    exit 1
}

# Sets $bindir to the directory under build directory $1 that holds
# echo_server and echo_client, and $exe to their suffix (.exe under a
# runner).
find_programs() {
    bindir=
    exe=
    for d in "$1/examples" "$1"; do
        if [ -x "$d/echo_server" ] && [ -x "$d/echo_client" ]; then
            bindir=$d
            return
        fi
        if [ -n "$runner" ] && [ -f "$d/echo_server.exe" ] && [ -f "$d/echo_client.exe" ]; then
            bindir=$d
            exe=.exe
            return
        fi
    done
    die "no echo_server and echo_client in $1/examples or $1 (build them first)"
}

# Sets $tmp to a new directory, removed on exit along with the processes
# still running.
make_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/cmio-$me.XXXXXX") || die "mktemp"
    trap cleanup EXIT
    trap 'exit 1' HUP INT TERM
}

cleanup() {
    for p in $server_pid $client_pid; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}

# Starts echo_server on 127.0.0.1 with the options given, output in
# $tmp/server.out and server.err, and waits until it listens. Port 0: the
# server binds a free port and prints it, so there is no race with other
# programs picking ports. Sets $server_pid and $port.
start_server() {
    $runner "$bindir/echo_server$exe" -a 127.0.0.1 -p 0 "$@" </dev/null >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    port=
    i=0
    while [ "$i" -lt 100 ]; do
        # (cat: quiet while the file does not exist yet; tr: Windows text mode
        # ends the line with CR LF)
        # shellcheck disable=SC2002
        port=$(cat "$tmp/server.out" 2>/dev/null | tr -d '\r' |
               sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p')
        [ -n "$port" ] && return
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    cat "$tmp/server.err" >&2
    die "the server did not start listening"
}

# Waits for process $1 (a child of this shell) to exit and sets $status to
# its exit status; kills it if it is still running after $2 tenths of a
# second. It must not run in a subshell ($(...)), which cannot wait for this
# shell's children. `kill -0` cannot tell an exited child (a zombie until
# waited for) from a live one, so a watchdog does the timing and `wait`
# collects the status.
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
    # shellcheck disable=SC2034 # for the caller
    status=$?
    : >"$tmp/reaped"
    wait "$watchdog" 2>/dev/null
}
