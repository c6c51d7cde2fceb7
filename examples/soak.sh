#!/bin/sh
# soak.sh: thousands of connections with mixed behaviour against a
# multi-threaded echo_server, then a stop under load.
#
#   sh examples/soak.sh BUILD_DIR [SECONDS [SERVER_OPTIONS]]
#
# BUILD_DIR is the CMake build directory (or the directory holding the two
# programs). SECONDS (default 20) is how long the mixed load runs;
# SERVER_OPTIONS (default "--threads 2") picks the server's layout, for
# example "--threads 2 --reuseport". The whole run takes SECONDS plus about
# three; whatever happens, the timeouts of its steps (server start 10 s,
# client drain 10 s, stop under load 17 s) bound it to SECONDS plus 40.
#
# The load, from one echo_client: 2000 echo connections with 1 to 8 KiB
# messages, 4 in flight each, 1 % of them cut by an RST and reconnected; 500
# connections that send and never read; 300 that never send. The server runs
# with 16 KiB buffers and a 4 s idle timeout, so never-reading and idle
# connections are closed and come back every few seconds for the whole run.
# Fewer connections are used when the descriptor limit cannot hold them.
#
# It checks:
#   - not one byte lost or corrupted, and no error of any kind: the client
#     verifies every echoed byte and the timing of every idle close, and
#     exits 0 only if all was right;
#   - bounded server memory: its RSS, sampled twice a second, never exceeds
#     its RSS at start plus one buffer and a record per connection, plus
#     8 MiB; and it does not creep up while the load goes on (the last
#     quarter of the run stays within 4 MiB of the peak before it);
#   - a clean exit: SIGTERM while 600 connections are busy stops the server
#     within a second, with status 0.
#
# Exits 0 if all holds, 1 otherwise, 77 (CTest's skip) if the server's RSS
# cannot be read on this system.

set -u
me=soak
runner=
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [SECONDS [SERVER_OPTIONS]]" >&2; exit 2; }
secs=${2:-20}
server_opts=${3:-"--threads 2"}
buffer_kib=16
idle=4

find_programs "$1"
make_tmp

# The RSS of process $1 in KiB, from /proc where there is one, else ps.
rss_kib() {
    if [ -r "/proc/$1/status" ]; then
        sed -n 's/^VmRSS:[^0-9]*\([0-9][0-9]*\).*/\1/p' "/proc/$1/status"
    else
        ps -o rss= -p "$1" 2>/dev/null | tr -d ' '
    fi
}

# Both programs raise their own soft limit to the hard one; raising it here
# too lets the plan below see what they will get. (ulimit -n is not POSIX,
# but dash, bash, ksh and the BSD shells all have it; without it, the plan
# stays as it is and the programs do the raising.)
# shellcheck disable=SC3045
ulimit -n "$(ulimit -H -n 2>/dev/null)" 2>/dev/null
# shellcheck disable=SC3045
limit=$(ulimit -n 2>/dev/null) || limit=unlimited
[ -n "$limit" ] || limit=unlimited
echo_conns=2000
noread=500
idle_conns=300
if [ "$limit" != unlimited ] && [ "$limit" -lt 2900 ]; then
    # Each program holds one descriptor per connection, plus a few.
    avail=$((limit - 100))
    [ "$avail" -ge 100 ] || die "a descriptor limit of $limit is too low for a soak"
    echo_conns=$((avail * 20 / 28))
    noread=$((avail * 5 / 28))
    idle_conns=$((avail * 3 / 28))
fi
total=$((echo_conns + noread + idle_conns))

# shellcheck disable=SC2086 # server_opts is a list of options
start_server $server_opts -c $((total + 1000)) -b "${buffer_kib}k" -i "$idle"
sleep 0.2
base=$(rss_kib "$server_pid")
if [ -z "$base" ]; then
    echo "soak: SKIPPED: cannot read the server's RSS here (no /proc, no ps -o rss)"
    exit 77
fi
echo "soak: server $server_opts on 127.0.0.1:$port, $buffer_kib KiB buffers, ${idle} s idle timeout, RSS $base KiB"
echo "soak: $secs s of $echo_conns echo connections (1-8 KiB messages, 4 in flight, 1 % reset), $noread never reading, $idle_conns idle"

# Samples the server's RSS twice a second into rss.txt, one number a line.
(
    while kill -0 "$server_pid" 2>/dev/null && [ ! -e "$tmp/stop-sampling" ]; do
        rss_kib "$server_pid" >>"$tmp/rss.txt"
        sleep 0.5
    done
) </dev/null >/dev/null 2>&1 &
sampler=$!

"$bindir/echo_client" -a 127.0.0.1 -p "$port" -c "$echo_conns" -s 1-8k -P 4 -r 1 -n "$noread" \
    -i "$idle_conns" -I "$idle" -S 4 -d "$secs" -q </dev/null >"$tmp/client.out" 2>"$tmp/client.err"
client_status=$?
: >"$tmp/stop-sampling"
wait "$sampler" 2>/dev/null
sed 's/^/soak: client: /' "$tmp/client.out"
if [ "$client_status" -ne 0 ]; then
    sed 's/^/soak:   /' "$tmp/client.err" >&2
    sed 's/^/soak:   /' "$tmp/server.err" >&2
    die "echo_client exited with status $client_status"
fi
grep -q '^errors: 0 ' "$tmp/client.out" || die "the client reported errors"
verified=$(sed -n 's/.*, \([0-9][0-9]*\) bytes verified$/\1/p' "$tmp/client.out")
if [ -z "$verified" ] || [ "$verified" -eq 0 ]; then
    die "no echoed byte was verified"
fi
kill -0 "$server_pid" 2>/dev/null || die "the server died under the load"

# Memory. The bound is what the server may hold by design: a ring and a
# record per connection on top of what it started with, plus room for
# malloc's own bookkeeping and the workers' spare rings.
samples=$(wc -l <"$tmp/rss.txt" | tr -d ' ')
[ "$samples" -ge 4 ] || die "only $samples RSS samples"
peak=$(sort -n "$tmp/rss.txt" | tail -n 1)
bound=$((base + total * (buffer_kib + 1) + 8192))
# Creep: the last quarter against the peak before it.
head_n=$((samples - samples / 4))
early=$(head -n "$head_n" "$tmp/rss.txt" | sort -n | tail -n 1)
late=$(tail -n $((samples / 4)) "$tmp/rss.txt" | sort -n | tail -n 1)
echo "soak: server RSS: $base KiB at start, peak $peak KiB (bound $bound KiB), last quarter's peak $late KiB against $early KiB before ($samples samples)"
[ "$peak" -le "$bound" ] || die "server RSS $peak KiB is above its bound of $bound KiB"
[ "$late" -le $((early + 4096)) ] || die "server RSS crept up from $early KiB to $late KiB during the run"

# A stop under load: SIGTERM while a second client keeps 600 connections
# busy. That client fails (its server goes away); only the server is judged.
"$bindir/echo_client" -a 127.0.0.1 -p "$port" -c 500 -s 1-8k -P 2 -n 100 -d 30 \
    </dev/null >"$tmp/hold.out" 2>"$tmp/hold.err" &
client_pid=$!
# Its progress line says when all 600 are open (at most 5 s here).
i=0
while [ "$i" -lt 50 ]; do
    grep -q ' 600 open' "$tmp/hold.err" 2>/dev/null && break
    sleep 0.1
    i=$((i + 1))
done
kill -0 "$server_pid" 2>/dev/null || die "the server was gone before SIGTERM"
kill -TERM "$server_pid"
wait_with_timeout "$server_pid" 10
server_status=$status
server_pid=
wait_with_timeout "$client_pid" 50
client_pid=
stopped=$(sed -n 's/^echo_server: stopped in \([0-9.]*\) ms: .*/\1/p' "$tmp/server.err")
sed -n 's/^echo_server: stopped/soak: server: stopped/p' "$tmp/server.err"
if [ "$server_status" -ne 0 ]; then
    sed 's/^/soak:   /' "$tmp/server.err" >&2
    [ "$server_status" -eq 137 ] && die "the server did not exit within a second of SIGTERM"
    die "echo_server exited with status $server_status after SIGTERM"
fi
[ -n "$stopped" ] || die "the server printed no summary"
echo "soak: server exited 0 within a second of SIGTERM under load ($stopped ms from the signal to everything freed)"
echo "soak: OK"
