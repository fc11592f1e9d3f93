#!/usr/bin/env bash
# The SIP load benchmark: N concurrent calls of the SIP carrier against an in-repo callee
# (examples/sip_load_peer.rs) that answers them all, talks on each at real time and times
# the server's RTP. For each voice and each N it reports the server's CPU per
# call-second, its memory per call, the gaps between consecutive packets of a stream as
# the callee saw them, and the server's own account of how late its frames went out
# (callcenter_rtp_send_lateness_seconds). See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
ROOT=$(cd "$HERE/.." && pwd)

CALLS="100 500 1000"
SECS=120
VOICES="synthetic"
CPS=20
SETTLE=20
PEER_NICE=0
PORT=28899
WORKDIR=""
KEEP=0
BUILD=1
OUT=""
BIN_FROM=""

usage() {
    cat <<EOF
usage: bench/sip_load.sh [options]
  --calls N[,N…]     concurrent calls, one run each (default: ${CALLS// /,})
  --secs S           length of every call: dialer.max_call_secs (default: $SECS)
  --voice V[,V…]     tts.engine: synthetic and/or espeak (default: $VOICES)
  --cps N            dialer.calls_per_second while the calls are set up (default: $CPS)
  --settle S         wait this long after the last call is answered before measuring: its
                     lines are still being made (default: $SETTLE)
  --peer-nice N      run the callee at this nice level: at 19 it takes only the CPU the
                     server leaves, so the server's lateness is its own (default: $PEER_NICE)
  --port P           first port to try for the server's HTTP (default: $PORT)
  --workdir DIR      scratch directory (default: a new one under /tmp)
  --out FILE         also write the table (Markdown) to FILE
  --keep             keep the scratch directory (logs, database, recordings)
  --no-build         use the release build as it is
  --bin PATH         benchmark this server binary instead (implies --no-build)
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --calls) CALLS=${2//,/ }; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --voice) VOICES=${2//,/ }; shift 2 ;;
        --cps) CPS=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --peer-nice) PEER_NICE=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN_FROM=$2; BUILD=0; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done


for tool in curl jq awk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
if [[ " $VOICES " == *" espeak "* ]]; then
    command -v espeak-ng >/dev/null || die "espeak-ng is missing (apt-get install -y espeak-ng)"
fi

# Each call holds an RTP socket on both sides, and the callee runs under this shell.
MAX_CALLS=$(tr ' ' '\n' <<<"$CALLS" | sort -n | tail -1)
NEED_FILES=$((2 * MAX_CALLS + 1024))
if (($(ulimit -n) < NEED_FILES)); then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    (($(ulimit -n) >= NEED_FILES)) || die "$MAX_CALLS calls need $NEED_FILES open files; the limit is $(ulimit -Hn)"
fi

if [[ -z $WORKDIR ]]; then
    WORKDIR=$(mktemp -d /tmp/callcenter-sip-bench.XXXXXX)
else
    mkdir -p "$WORKDIR"
fi
WORKDIR=$(cd "$WORKDIR" && pwd)
RESULTS=$WORKDIR/results.tsv
: >"$RESULTS"

SRV_PID=""
PEER_PID=""
stop_all() {
    local pid
    for pid in $SRV_PID $PEER_PID; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SRV_PID=""
    PEER_PID=""
}
cleanup() {
    local rc=$?
    stop_all
    if [[ $KEEP == 0 && $rc == 0 ]]; then
        rm -rf "$WORKDIR"
    elif [[ $KEEP == 0 ]]; then
        rm -rf "$WORKDIR"/run-*/recordings "$WORKDIR"/run-*/*.db*
        log "failed: logs kept in $WORKDIR"
    else
        log "kept $WORKDIR"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $BUILD == 1 ]]; then
    log "building the release binary and the load callee"
    (cd "$ROOT" && cargo build --release --quiet --bin callcenter --example sip_load_peer)
elif [[ ! -x $TARGET_DIR/release/examples/sip_load_peer ]]; then
    (cd "$ROOT" && cargo build --release --quiet --example sip_load_peer)
fi
BIN_FROM=${BIN_FROM:-$TARGET_DIR/release/callcenter}
[[ -x $BIN_FROM ]] || die "no $BIN_FROM"
# Copies, so that a rebuild during the run does not change what runs.
BIN=$WORKDIR/callcenter
PEER=$WORKDIR/sip_load_peer
cp "$BIN_FROM" "$BIN"
cp "$TARGET_DIR/release/examples/sip_load_peer" "$PEER"
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
VERSION="commit $COMMIT ($DIRTY files changed)"
if [[ $BIN_FROM != "$TARGET_DIR/release/callcenter" ]]; then VERSION="binary $BIN_FROM"; fi

while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
BASE=http://127.0.0.1:$PORT
HZ=$(getconf CLK_TCK)
log "$VERSION, port $PORT, scratch $WORKDIR"

# --- measures --------------------------------------------------------------------------

# CPU seconds of a process: its own (utime + stime), and with its reaped children's.
cpu_own() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
cpu_all() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"; }
now() { printf '%s' "$EPOCHREALTIME"; }
# CPU seconds the whole machine has been busy (all CPUs, idle and iowait left out).
# Datagrams the kernel dropped because their socket's receive buffer was full (a receiver,
# here the callee or the server, not reading in time).
udp_drops() { awk '$1 == "Udp:" && $6 ~ /^[0-9]+$/ { print $6 }' /proc/net/snmp; }
cpu_machine() { awk -v hz="$HZ" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
calc() { awk "BEGIN { $1 }"; }

# The lateness histogram and the skipped frames, from /metrics, one "le count" a line
# (after a first line of its own: the metrics are absent until the first call).
metrics_snapshot() {
    echo "snapshot 0"
    curl -sS --max-time 120 "$BASE/metrics" | awk '
        /^callcenter_rtp_send_lateness_seconds_bucket/ { match($0, /le="[^"]*"/); print substr($0, RSTART + 4, RLENGTH - 5), $NF }
        /^callcenter_rtp_send_lateness_seconds_count/ { print "count", $NF }
        /^callcenter_rtp_frames_skipped_total/ { print "skipped", $NF }'
}

# lateness FROM TO: "p50 p99 late skipped frames" between two snapshots: the quantiles as
# the bucket bound they fall under (ms), late = frames later than 5 ms.
lateness() {
    awk '
        FNR == NR { before[$1] = $2; next }
        { d[$1] = $2 - before[$1]; if ($1 ~ /^[0-9.]+$/) les[++n] = $1 }
        END {
            total = d["count"]
            p50 = p99 = "-"
            for (i = 1; i <= n; i++) {
                le = les[i]
                if (p50 == "-" && d[le] >= 0.5 * total) p50 = le * 1000
                if (p99 == "-" && d[le] >= 0.99 * total) p99 = le * 1000
                if (le == "0.005") late = total - d[le]
            }
            if (p50 == "-") p50 = ">500"
            if (p99 == "-") p99 = ">500"
            printf "%s %s %d %d %d\n", p50, p99, late, d["skipped"], total
        }' "$1" "$2"
}

# The callee: a FIFO each way.
start_peer() {
    local dir=$1
    mkfifo "$dir/peer.in" "$dir/peer.out"
    nice -n "$PEER_NICE" "$PEER" --talk $((SECS + 60)) --voice quiet <"$dir/peer.in" >"$dir/peer.out" 2>"$dir/peer.log" &
    PEER_PID=$!
    exec {PEER_IN}>"$dir/peer.in"
    exec {PEER_OUT}<"$dir/peer.out"
    local line
    IFS= read -r -t 10 -u "$PEER_OUT" line || die "the callee did not start: $(cat "$dir/peer.log")"
    PEER_ADDR=${line#listening }
}
peer() {
    echo "$1" >&"$PEER_IN"
    if [[ $1 == report ]]; then
        IFS= read -r -t 10 -u "$PEER_OUT" PEER_REPORT || die "the callee did not report"
    fi
}
stop_peer() {
    exec {PEER_IN}>&- {PEER_OUT}<&-
}

start_server() {
    local dir=$1 calls=$2 voice=$3
    (
        cd "$dir"
        exec env CALLCENTER__SERVER__BIND="127.0.0.1:$PORT" \
            CALLCENTER__DATABASE__URL="sqlite://$dir/callcenter.db" \
            CALLCENTER__RECORDINGS__DIR="$dir/recordings" CALLCENTER__LOG__FORMAT=json \
            CALLCENTER__DIALER__CARRIER=sip CALLCENTER__SIP__TRUNKS="[{address = \"$PEER_ADDR\"}]" \
            CALLCENTER__SIP__BIND=127.0.0.1:0 \
            CALLCENTER__SIP__RTP_PORT_MIN=10000 CALLCENTER__SIP__RTP_PORT_MAX=29998 \
            CALLCENTER__DIALER__MAX_CONCURRENT_CALLS="$calls" \
            CALLCENTER__DIALER__CALLS_PER_SECOND="$CPS" \
            CALLCENTER__DIALER__MAX_CALL_SECS="$SECS" \
            CALLCENTER__DIALER__MAX_ATTEMPTS=1 CALLCENTER__DIALER__RING_TIMEOUT_SECS=30 \
            CALLCENTER__DIALER__SHUTDOWN_GRACE_SECS=0 \
            CALLCENTER__TTS__ENGINE="$voice" \
            "$BIN" serve >"$dir/server.log" 2>&1
    ) &
    SRV_PID=$!
    local deadline=$((SECONDS + 60))
    until curl -sf --max-time 2 "$BASE/readyz" >/dev/null 2>&1; do
        kill -0 "$SRV_PID" 2>/dev/null || { tail -5 "$dir/server.log" >&2; die "the server exited"; }
        ((SECONDS < deadline)) || die "the server is not ready after 60 s"
        sleep 0.1
    done
}

# N tickets, 1,000 a request. Each greets its own customer (a line the voice makes per
# call); the notice itself is one long line, the same for all (made once, then cached),
# long enough that the agent is still reading it when dialer.max_call_secs ends the call.
create_tasks() {
    local dir=$1 n=$2 f answer
    local repeats=$(((SECS + 30) / 5 + 1))
    mkdir -p "$dir/tickets"
    awk -v n="$n" -v dir="$dir/tickets" -v repeats="$repeats" -v prefix="S$$-$n" 'BEGIN {
        for (i = 0; i < repeats; i++) content = content "尊敬的客户，提醒您参加我们本周末的线下优惠活动。"
        for (r = 0; r * 1000 < n; r++) {
            f = sprintf("%s/%05d.json", dir, r)
            printf "[" > f
            for (i = 0; i < 1000 && r * 1000 + i < n; i++) {
                k = r * 1000 + i
                printf "%s{\"ticketNo\":\"%s-%d\",\"phone\":\"13%08d1\",\"username\":\"客户%d\",\"ticketType\":\"活动通知\",\"ticketContent\":\"%s\"}", (i ? "," : ""), prefix, k, k, k, content > f
            }
            printf "]" > f
            close(f)
        }
    }'
    for f in "$dir"/tickets/*.json; do
        answer=$(curl -sS --max-time 120 -X POST -H 'Content-Type: application/json' \
            "$BASE/api/aicall/createTasks" --data-binary @"$f")
        [[ $(jq -r .code <<<"$answer") == 0 ]] || die "createTasks: ${answer:0:300}"
    done
}

# --- one run ---------------------------------------------------------------------------

# A run that could not reach its steady state: a row saying why, and on to the next.
not_measured() {
    log "$1 calls, $2: not measured: $3"
    printf '%s|%s|not measured: %s|||||||||||||||\n' "$1" "$2" "$3" >>"$RESULTS"
    stop_all
    stop_peer
}

run_one() {
    local n=$1 voice=$2 dir
    dir=$WORKDIR/run-$voice-$n
    mkdir -p "$dir"
    log "=== $n calls, voice $voice, $SECS s each"
    start_peer "$dir"
    start_server "$dir" "$n" "$voice"
    sleep 1
    local idle_kb
    idle_kb=$(proc_kb "$SRV_PID" VmRSS)
    metrics_snapshot >"$dir/m0"
    local t0 cpu0 up=0 first=""
    t0=$(now)
    cpu0=$(cpu_all "$SRV_PID")
    create_tasks "$dir" "$n"

    # The ramp: until all N calls are answered.
    local limit=$((n / CPS + 120)) started=$SECONDS
    while :; do
        peer report
        up=$(jq -r .calls <<<"$PEER_REPORT")
        if [[ -z $first ]] && ((up > 0)); then first=$(now); fi
        ((up < n)) || break
        if ((SECONDS - started >= limit)); then
            not_measured "$n" "$voice" "only $up of $n calls up after $limit s"
            return
        fi
        sleep 0.5
    done
    local t_up ramp ramp_cpu
    t_up=$(now)
    ramp=$(calc "printf \"%.1f\", $t_up - $t0")
    ramp_cpu=$(calc "printf \"%.1f\", $(cpu_all "$SRV_PID") - $cpu0")

    # The steady state: every call up and its lines made, until shortly before the first
    # call ends.
    local window
    window=$(calc "w = $first + $SECS - 10 - $t_up - $SETTLE; printf \"%d\", (w > 0 ? w : 0)")
    if ((window < 10)); then
        not_measured "$n" "$voice" "the set-up took ${ramp} s (${ramp_cpu} CPU s): too long for calls of $SECS s"
        return
    fi
    log "all $n calls up after ${ramp} s; measuring ${window} s after ${SETTLE} s"
    sleep "$SETTLE"
    metrics_snapshot >"$dir/m1"
    peer reset
    local c0 p0 m0 d0 s0 max_kb=0 sum_kb=0 samples=0 kb
    c0=$(cpu_own "$SRV_PID")
    p0=$(cpu_own "$PEER_PID")
    m0=$(cpu_machine)
    d0=$(udp_drops)
    s0=$(now)
    local end=$((SECONDS + window))
    while ((SECONDS < end)); do
        sleep 1
        kb=$(proc_kb "$SRV_PID" VmRSS)
        ((kb > max_kb)) && max_kb=$kb
        sum_kb=$((sum_kb + kb))
        samples=$((samples + 1))
    done
    local c1 p1 m1 d1 s1 hwm_kb
    c1=$(cpu_own "$SRV_PID")
    p1=$(cpu_own "$PEER_PID")
    m1=$(cpu_machine)
    d1=$(udp_drops)
    s1=$(now)
    hwm_kb=$(proc_kb "$SRV_PID" VmHWM)
    metrics_snapshot >"$dir/m2"
    peer report
    local held
    held=$(jq -r .calls <<<"$PEER_REPORT")
    ((held == n)) || log "warning: $held of $n calls up at the end of the measurement"
    stop_all
    stop_peer

    local secs_w cpu_pct cpu_ms peer_pct other_pct rss_mb per_call hwm_mb
    secs_w=$(calc "printf \"%.1f\", $s1 - $s0")
    cpu_pct=$(calc "printf \"%.0f\", 100 * ($c1 - $c0) / ($s1 - $s0)")
    cpu_ms=$(calc "printf \"%.3f\", 1000 * ($c1 - $c0) / ($n * ($s1 - $s0))")
    peer_pct=$(calc "printf \"%.0f\", 100 * ($p1 - $p0) / ($s1 - $s0)")
    # The rest of the machine's work in the meantime: the machine is shared.
    other_pct=$(calc "printf \"%.0f\", 100 * (($m1 - $m0) - ($c1 - $c0) - ($p1 - $p0)) / ($s1 - $s0)")
    rss_mb=$(calc "printf \"%.0f\", $sum_kb / $samples / 1024")
    per_call=$(calc "printf \"%.2f\", ($sum_kb / $samples - $idle_kb) / 1024 / $n")
    hwm_mb=$(calc "printf \"%.0f\", $hwm_kb / 1024")
    local g50 g99 gmax over25 missing steady ramp_late
    g50=$(jq -r '.gap_p50_ms | . * 10 | round / 10' <<<"$PEER_REPORT")
    g99=$(jq -r '.gap_p99_ms | . * 10 | round / 10' <<<"$PEER_REPORT")
    gmax=$(jq -r '.gap_max_ms | . * 10 | round / 10' <<<"$PEER_REPORT")
    over25=$(jq -r '.gaps_over_25ms' <<<"$PEER_REPORT")
    missing=$(jq -r '.missing' <<<"$PEER_REPORT")
    steady=$(lateness "$dir/m1" "$dir/m2")
    ramp_late=$(lateness "$dir/m0" "$dir/m1")
    read -r l50 l99 late skipped frames <<<"$steady"
    read -r _ r99 rlate rskipped _ <<<"$ramp_late"
    printf '%s\n' "$n|$voice|${ramp} s, ${ramp_cpu} CPU s; p99 ≤ $r99 ms, $rlate late, $rskipped skipped|$secs_w|$cpu_pct %|$cpu_ms|$rss_mb ($((idle_kb / 1024)) idle)|$per_call|$hwm_mb|$g50 / $g99 / $gmax|$over25|$missing ($((d1 - d0)))|≤ $l50 / ≤ $l99|$late of $frames|$skipped|$peer_pct %|$other_pct %" >>"$RESULTS"
    log "$n calls: CPU $cpu_pct % ($cpu_ms ms per call-second), RSS $rss_mb MB, gaps $g50/$g99/$gmax ms, lateness p99 ≤ $l99 ms, $late late, $skipped skipped, callee $peer_pct %, others $other_pct %"
    if [[ $KEEP == 0 ]]; then rm -rf "$dir/recordings" "$dir"/callcenter.db* "$dir/tickets"; fi
}

STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
for voice in $VOICES; do
    for n in $CALLS; do
        run_one "$n" "$voice"
    done
done

render() {
    echo "callcenter SIP load benchmark, $STARTED, $VERSION"
    echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "calls of $SECS s (dialer.max_call_secs), set up at $CPS calls/s, measured from $SETTLE s after the last was answered; SQLite; recordings on; the callee at nice $PEER_NICE"
    echo
    echo "| calls | voice | set-up: time to all answered, server CPU; lateness until measuring | steady s | server CPU | CPU ms per call-s | RSS MB | RSS MB per call | peak RSS MB | gap p50 / p99 / max ms (callee) | gaps > 25 ms | seq. missing (UDP drops) | lateness p50 / p99 ms (server) | frames > 5 ms late | skipped | callee CPU | others' CPU |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    awk -F'|' '{ line = "|"; for (i = 1; i <= NF; i++) line = line " " $i " |"; print line }' "$RESULTS"
}
echo
render
if [[ -n $OUT ]]; then render >"$OUT"; fi
