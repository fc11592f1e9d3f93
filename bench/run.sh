#!/usr/bin/env bash
# The project's performance benchmark: builds the release binary, then for each backend
# and database size seeds a database, and measures the HTTP floor, records/list,
# calltask/list, createTasks, the dialer's throughput (with one campaign and with 20),
# memory with 10,000 calls in progress, start-up time and idle memory. Prints one table with a verdict per target.
# See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
ROOT=$(cd "$HERE/.." && pwd)

SIZES="1000000 10000000"
BACKENDS="sqlite postgres"
DURATION=10
THREADS=2
CONNECTIONS=32
CREATE_CONNECTIONS=4
TASK_RATIO=10
DIALER_TASKS=20000
RSS_CALLS=10000
PG_URL=postgres://postgres@127.0.0.1:5432
PORT=28899
WORKDIR=""
KEEP=0
BUILD=1
ONLY="seed,startup,http,filters,create,dialer,campaigns,rss"
OUT=""
BIN_FROM=""
DATABASE=""

usage() {
    cat <<EOF
usage: bench/run.sh [options]
  --sizes N[,N…]          database sizes in call records (default: $SIZES)
  --backends B[,B…]       sqlite and/or postgres (default: $BACKENDS)
  --duration S            seconds per wrk run (default: $DURATION)
  --threads N             wrk threads (default: $THREADS)
  --connections N         wrk connections for the list endpoints (default: $CONNECTIONS)
  --create-connections N  wrk connections for createTasks (default: $CREATE_CONNECTIONS)
  --task-ratio N          seeded tasks = records / N (default: $TASK_RATIO)
  --dialer-tasks N        tasks the dialer throughput run calls (default: $DIALER_TASKS)
  --rss-calls N           calls in progress for the memory run (default: $RSS_CALLS)
  --only G[,G…]           groups to run: seed,startup,http,filters,create,dialer,campaigns,rss
                          (default: all; seed is needed by the others on a fresh database)
  --database URL          run on this database, already seeded, instead of a new one
                          (one size, one backend; with --only not including seed)
  --pg URL                PostgreSQL server, without a database (default: $PG_URL)
  --port P                first port to try for the server (default: $PORT)
  --workdir DIR           scratch directory (default: a new one under /tmp)
  --out FILE              also write the table (Markdown) to FILE
  --keep                  keep the scratch directory and the PostgreSQL databases
  --no-build              use target/release/callcenter as it is
  --bin PATH              benchmark this binary instead (implies --no-build)
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) SIZES=${2//,/ }; shift 2 ;;
        --backends) BACKENDS=${2//,/ }; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --create-connections) CREATE_CONNECTIONS=$2; shift 2 ;;
        --task-ratio) TASK_RATIO=$2; shift 2 ;;
        --dialer-tasks) DIALER_TASKS=$2; shift 2 ;;
        --rss-calls) RSS_CALLS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --pg) PG_URL=${2%/}; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN_FROM=$2; BUILD=0; shift 2 ;;
        --database) DATABASE=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

want() { [[ ",$ONLY," == *",$1,"* ]]; }

for tool in wrk curl jq awk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
if [[ " $BACKENDS " == *" postgres "* ]]; then
    command -v psql >/dev/null || die "psql is missing"
fi
if [[ " $BACKENDS " == *" sqlite "* ]]; then
    command -v sqlite3 >/dev/null || die "sqlite3 is missing (apt-get install -y sqlite3)"
fi

if [[ -z $WORKDIR ]]; then
    WORKDIR=$(mktemp -d /tmp/callcenter-bench.XXXXXX)
else
    mkdir -p "$WORKDIR"
fi
WORKDIR=$(cd "$WORKDIR" && pwd)
RESULTS=$WORKDIR/results.tsv
: >"$RESULTS"

# --- cleanup ---------------------------------------------------------------------------

SRV_PID=""
PG_DBS=()
cleanup() {
    local rc=$?
    if [[ -n $SRV_PID ]] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill -KILL "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
    # wrk runs in the foreground, but a Ctrl-C may leave one behind.
    local jobs_left
    jobs_left=$(jobs -p)
    [[ -n $jobs_left ]] && kill $jobs_left 2>/dev/null || true
    if [[ $KEEP == 0 ]]; then
        for db in "${PG_DBS[@]}"; do
            psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        done
        if [[ $rc == 0 ]]; then
            rm -rf "$WORKDIR"
        else
            # The server logs tell why: keep them, not the databases and recordings.
            rm -rf "$WORKDIR"/sqlite-* "$WORKDIR/recordings" "$WORKDIR/callcenter"
            log "failed: logs kept in $WORKDIR"
        fi
    else
        log "kept $WORKDIR ${PG_DBS[*]}"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------

if [[ $BUILD == 1 ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_FROM=${BIN_FROM:-$TARGET_DIR/release/callcenter}
[[ -x $BIN_FROM ]] || die "no $BIN_FROM"
# A copy, so that a rebuild by someone else during the run does not change what runs.
BIN=$WORKDIR/callcenter
cp "$BIN_FROM" "$BIN"
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
VERSION="commit $COMMIT ($DIRTY files changed)"
if [[ $BIN_FROM != "$TARGET_DIR/release/callcenter" ]]; then VERSION="binary $BIN_FROM"; fi

# A free port: nothing answers on it.
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
BASE=http://127.0.0.1:$PORT
log "$VERSION, port $PORT, scratch $WORKDIR"

# --- the server ------------------------------------------------------------------------

DB_URL=""
SRV_READY_MS=""
# A FIFO nobody writes to: `read -t` on it is a sleep without a fork.
mkfifo "$WORKDIR/sleep.fifo"
exec {SLEEP_FD}<>"$WORKDIR/sleep.fifo"

# start_server NAME [VAR=VALUE…]: starts `callcenter serve`, waits for /readyz 200 and sets
# SRV_PID and SRV_READY_MS (spawn → first 200, polled over a bash socket: no fork per try).
start_server() {
    local name=$1
    shift
    local t0=$EPOCHREALTIME
    (
        cd "$WORKDIR"
        exec env CALLCENTER__SERVER__BIND="127.0.0.1:$PORT" CALLCENTER__DATABASE__URL="$DB_URL" \
            CALLCENTER__RECORDINGS__DIR="$WORKDIR/recordings" CALLCENTER__LOG__FORMAT=json "$@" \
            "$BIN" serve >"$WORKDIR/$name.log" 2>&1
    ) &
    SRV_PID=$!
    local line deadline=$((SECONDS + 120))
    while :; do
        kill -0 "$SRV_PID" 2>/dev/null || { tail -5 "$WORKDIR/$name.log" >&2; die "server $name exited"; }
        ((SECONDS < deadline)) || die "server $name not ready after 120 s"
        if { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null; then
            printf 'GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
            line=""
            IFS= read -r -t 5 line <&3 || true
            exec 3<&- 3>&-
            if [[ $line == "HTTP/1.1 200"* ]]; then
                break
            fi
        fi
        read -r -t 0.002 -u "$SLEEP_FD" || true
    done
    SRV_READY_MS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
}

# stop_server [MAX_SECS]: SIGTERM, then SIGKILL after MAX_SECS. Calls `on_stop_tick`, if
# defined, every 0.1 s while waiting.
stop_server() {
    local max=${1:-30} i=0
    [[ -n $SRV_PID ]] || return 0
    kill -TERM "$SRV_PID" 2>/dev/null || true
    while kill -0 "$SRV_PID" 2>/dev/null; do
        if [[ $(type -t on_stop_tick) == function ]]; then on_stop_tick; fi
        if ((i >= max * 10)); then
            log "server did not stop in $max s: killing it"
            kill -KILL "$SRV_PID" 2>/dev/null || true
        fi
        sleep 0.1
        i=$((i + 1))
    done
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}


post() { curl -sS --max-time 120 -X POST -H 'Content-Type: application/json' "$BASE$1" --data-binary "$2"; }

# Checks one answer: code 0, and prints `total`.
check_total() {
    local path=$1 body=$2 answer code
    answer=$(post "$path" "$body")
    code=$(jq -r .code <<<"$answer")
    [[ $code == 0 ]] || die "$path $body answered: ${answer:0:300}"
    jq -r .total <<<"$answer"
}

# --- results ---------------------------------------------------------------------------

# result BACKEND SIZE MEASURE VALUE UNIT P50 P99 P99_1 TARGET VERDICT
result() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
    log "$(printf '%s %s: %s = %s %s  p50 %s  p99 %s  p99@1conn %s  %s %s' "$@")"
}

# verdict OK: pass or FAIL
verdict() { if [[ $1 == 1 ]]; then echo pass; else echo FAIL; fi; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 <= b + 0) ? 1 : 0 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 >= b + 0) ? 1 : 0 }'; }
human() { awk -v n="$1" 'BEGIN { if (n >= 1000000) printf "%gM", n / 1000000; else if (n >= 1000) printf "%gk", n / 1000; else print n }'; }

# wrk_run URL CONNECTIONS THREADS DURATION [SCRIPT]: sets W_RPS W_P50 W_P99 W_ERR W_REQ.
wrk_run() {
    local url=$1 conns=$2 threads=$3 secs=$4 script=${5:-$HERE/lua/request.lua} out line
    out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 30s -s "$script" "$url") ||
        die "wrk failed on $url"
    line=$(grep '^BENCH ' <<<"$out") || die "no BENCH line from wrk: $out"
    W_REQ=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
    W_ERR=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
    W_P50=$(sed -E 's/.*p50=([0-9.]+).*/\1/' <<<"$line")
    W_P99=$(sed -E 's/.*p99=([0-9.]+).*/\1/' <<<"$line")
    W_RPS=$(sed -E 's/.*requests=([0-9]+) secs=([0-9.]+).*/\1 \2/' <<<"$line" | awk '{ printf "%.0f", $1 / $2 }')
    if [[ $W_ERR != 0 ]]; then log "warning: $W_ERR errors on $url"; fi
}

# list_bench BACKEND SIZE MEASURE PATH BODY: the loaded run, then one connection.
declare -A P99 P99_1 RPS
list_bench() {
    local backend=$1 size=$2 measure=$3 path=$4 body=$5
    BENCH_BODY=$body wrk_run "$BASE$path" "$CONNECTIONS" "$THREADS" "$DURATION"
    local rps=$W_RPS p50=$W_P50 p99=$W_P99 err=$W_ERR
    BENCH_BODY=$body wrk_run "$BASE$path" 1 1 "$LIGHT_SECS"
    RPS[$measure]=$rps
    P99[$measure]=$p99
    P99_1[$measure]=$W_P99
    local unit="req/s"
    [[ $err == 0 ]] || unit="req/s ($err errors)"
    result "$backend" "$size" "$measure" "$rps" "$unit" "$p50" "$p99" "$W_P99" "" ""
}
LIGHT_SECS=$(((DURATION + 2) / 3))

# Tickets for createTasks as files of COUNT/1000 JSON arrays: make_tickets PREFIX COUNT DIR
# make_tickets PREFIX COUNT DIR [CAMPAIGNS]: files of 1000 tickets; with CAMPAIGNS, ticket
# n goes to the campaign bench-(n mod CAMPAIGNS) (its batchName).
make_tickets() {
    local prefix=$1 count=$2 dir=$3 campaigns=${4:-0}
    mkdir -p "$dir"
    awk -v prefix="$prefix" -v count="$count" -v dir="$dir" -v campaigns="$campaigns" 'BEGIN {
        for (r = 0; r * 1000 < count; r++) {
            f = sprintf("%s/%05d.json", dir, r)
            printf "[" > f
            for (i = 0; i < 1000 && r * 1000 + i < count; i++) {
                n = r * 1000 + i
                campaign = campaigns > 0 ? sprintf(",\"batchName\":\"bench-%02d\"", n % campaigns) : ""
                printf "%s{\"ticketNo\":\"%s-%d\",\"phone\":\"13%08d1\",\"username\":\"张三\",\"ticketType\":\"活动通知\",\"ticketContent\":\"尊敬的客户，提醒您参加我们本周末的线下优惠活动。\"%s}", (i ? "," : ""), prefix, n, (n * 7919 + 17) % 100000000, campaign > f
            }
            printf "]" > f
            close(f)
        }
    }'
}

create_from() {
    local f answer
    for f in "$1"/*.json; do
        answer=$(curl -sS --max-time 120 -X POST -H 'Content-Type: application/json' \
            "$BASE/api/aicall/createTasks" --data-binary @"$f")
        [[ $(jq -r .code <<<"$answer") == 0 ]] || die "createTasks: ${answer:0:300}"
    done
}

task_total() { check_total /api/aicall/calltask/list "{\"pageNum\":1,\"pageSize\":1${1:+,\"status\":\"$1\"}}"; }

# Totals of 待呼叫, 呼叫中 and 等待重呼 in one curl.
open_totals() {
    curl -sS --max-time 30 -H 'Content-Type: application/json' \
        -X POST "$BASE/api/aicall/calltask/list" -d '{"pageNum":1,"pageSize":1,"status":"待呼叫"}' --next \
        -H 'Content-Type: application/json' \
        -X POST "$BASE/api/aicall/calltask/list" -d '{"pageNum":1,"pageSize":1,"status":"呼叫中"}' --next \
        -H 'Content-Type: application/json' \
        -X POST "$BASE/api/aicall/calltask/list" -d '{"pageNum":1,"pageSize":1,"status":"等待重呼"}' |
        jq -rs 'if all(.code == 0) then (map(.total) | join(" ")) else "error" end'
}

# poll_total STATUS: sets POLL_TOTAL, empty when the API answers an error (those are
# counted in POLL_ERRORS).
POLL_ERRORS=0
POLL_TOTAL=""
poll_total() {
    local answer
    answer=$(curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' "$BASE/api/aicall/calltask/list" \
        -d "{\"pageNum\":1,\"pageSize\":1,\"status\":\"$1\"}" 2>/dev/null) || true
    POLL_TOTAL=""
    if [[ $(jq -r .code <<<"$answer" 2>/dev/null) == 0 ]]; then
        POLL_TOTAL=$(jq -r .total <<<"$answer")
    else
        POLL_ERRORS=$((POLL_ERRORS + 1))
    fi
}

# dialer_throughput NAME: with the server running without its dialer and tasks waiting,
# restarts it with the dialer at time_scale 0 and waits until nothing is open; sets
# DIALER_SECS and DIALER_CPS (the tasks that completed, per second). Leaves the server
# stopped.
DIALER_SECS=0
DIALER_CPS=0
dialer_throughput() {
    local done_before t0 totals left done_after
    done_before=$(task_total 已完成)
    stop_server
    start_server "$1" CALLCENTER__SIM__TIME_SCALE=0 CALLCENTER__DIALER__CALLS_PER_SECOND=100000 \
        CALLCENTER__DIALER__MAX_CONCURRENT_CALLS=1000 CALLCENTER__DIALER__MAX_ATTEMPTS=1
    t0=$EPOCHREALTIME
    POLL_ERRORS=0
    while :; do
        totals=$(open_totals) || totals=error
        if [[ $totals == error ]]; then
            POLL_ERRORS=$((POLL_ERRORS + 1))
            left=1
        else
            left=$(awk '{ print $1 + $2 + $3 }' <<<"$totals")
        fi
        ((left > 0)) || break
        awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 600) }' && die "$1: $left tasks left after 600 s"
        sleep 0.1
    done
    DIALER_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    done_after=$(task_total 已完成)
    DIALER_CPS=$(awk -v n="$((done_after - done_before))" -v s="$DIALER_SECS" 'BEGIN { printf "%.0f", n / s }')
    ((done_after - done_before == DIALER_TASKS)) ||
        log "warning: $((done_after - done_before)) tasks completed, expected $DIALER_TASKS"
    stop_server
}

# bench_filters BACKEND SIZE: records/list and calltask/list under the filter combinations
# a dashboard sends (timeLen, extnum, time windows on tasks, deep pages under filters),
# each loaded and on one connection, with its p99 and its req/s against /healthz in the
# same run.
bench_filters() {
    local backend=$1 h=$2 rec=/api/aicall/records/list task=/api/aicall/calltask/list
    log "filter combinations (${DURATION} s each, $CONNECTIONS connections; then 1 connection)"
    BENCH_BODY="" wrk_run "$BASE/healthz" "$CONNECTIONS" "$THREADS" "$DURATION"
    local floor=$W_RPS
    result "$backend" "$h" "GET /healthz (filters)" "$W_RPS" "req/s" "$W_P50" "$W_P99" "" "" ""
    local day day2 week from to wfrom mfrom mto sfrom sto ext
    day=$(TZ=Asia/Shanghai date -d yesterday +%F)
    day2=$(TZ=Asia/Shanghai date -d '2 days ago' +%F)
    week=$(TZ=Asia/Shanghai date -d '7 days ago' +%F)
    from="\"$day 00:00:00\"" to="\"$day 23:59:59\"" wfrom="\"$week 00:00:00\""
    # 24 hours to the minute, as "the last day" is sent: edges inside hours; and to the
    # second, edges inside ten-minute slots too.
    mfrom="\"$day2 10:10:00\"" mto="\"$day 10:09:59\""
    sfrom="\"$day2 10:13:27\"" sto="\"$day 10:13:26\""
    ext=$(post $rec '{"callType":"01","pageNum":1,"pageSize":1}' | jq -r '.rows[0].extnum')
    [[ $ext =~ ^[0-9]+$ ]] || die "no extension on the newest inbound call"
    local -a names bodies paths
    add() { names+=("$1"); paths+=("$2"); bodies+=("$3"); }
    add "spec example: callType 02 + day + timeLenStart 5, size 5" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$from,\"calloutTimeEnd\":$to,\"timeLenStart\":5,\"pageNum\":1,\"pageSize\":5}"
    add "callType 02 + timeLenStart 1 (every answered AI call)" $rec \
        '{"callType":"02","timeLenStart":1,"pageNum":1,"pageSize":10}'
    add "callType 02 + week + timeLen 60..120" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$wfrom,\"calloutTimeEnd\":$to,\"timeLenStart\":60,\"timeLenEnd\":120,\"pageNum\":1,\"pageSize\":10}"
    add "callType 02 + timeLenEnd 0 (unanswered)" $rec \
        '{"callType":"02","timeLenEnd":0,"pageNum":1,"pageSize":10}'
    add "callType 01 + extnum $ext" $rec \
        "{\"callType\":\"01\",\"extnum\":\"$ext\",\"pageNum\":1,\"pageSize\":10}"
    add "callType 01 + extnum + week + timeLenStart 30" $rec \
        "{\"callType\":\"01\",\"extnum\":\"$ext\",\"calloutTimeStart\":$wfrom,\"calloutTimeEnd\":$to,\"timeLenStart\":30,\"pageNum\":1,\"pageSize\":10}"
    add "deep: callType 02 + timeLenStart 1, page 1000 of 10" $rec \
        '{"callType":"02","timeLenStart":1,"pageNum":1000,"pageSize":10}'
    add "deep: callType 02 + week + timeLen 60..120, page 1000 of 10" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$wfrom,\"calloutTimeEnd\":$to,\"timeLenStart\":60,\"timeLenEnd\":120,\"pageNum\":1000,\"pageSize\":10}"
    add "callType 02 + 24 h from 10:10" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$mfrom,\"calloutTimeEnd\":$mto,\"pageNum\":1,\"pageSize\":10}"
    add "callType 02 + 24 h from 10:10 + timeLen 60..120" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$mfrom,\"calloutTimeEnd\":$mto,\"timeLenStart\":60,\"timeLenEnd\":120,\"pageNum\":1,\"pageSize\":10}"
    add "callType 02 + 24 h from 10:13:27 + timeLen 60..120" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$sfrom,\"calloutTimeEnd\":$sto,\"timeLenStart\":60,\"timeLenEnd\":120,\"pageNum\":1,\"pageSize\":10}"
    add "deep: callType 02 + 24 h from 10:10 + timeLenStart 1, page 1000 of 10" $rec \
        "{\"callType\":\"02\",\"calloutTimeStart\":$mfrom,\"calloutTimeEnd\":$mto,\"timeLenStart\":1,\"pageNum\":1000,\"pageSize\":10}"
    add "deep: callType 01 + extnum, last page" $rec \
        "{\"callType\":\"01\",\"extnum\":\"$ext\",\"pageNum\":LAST,\"pageSize\":10}"
    # The seed puts every AI call and task in the default campaign: a campaign as large as
    # the table.
    add "batchName default (every AI call)" $rec \
        '{"callType":"02","batchName":"default","pageNum":1,"pageSize":10}'
    add "batchName default + week + timeLen 60..120" $rec \
        "{\"callType\":\"02\",\"batchName\":\"default\",\"calloutTimeStart\":$wfrom,\"calloutTimeEnd\":$to,\"timeLenStart\":60,\"timeLenEnd\":120,\"pageNum\":1,\"pageSize\":10}"
    add "deep: batchName default + timeLenStart 1, page 1000 of 10" $rec \
        '{"callType":"02","batchName":"default","timeLenStart":1,"pageNum":1000,"pageSize":10}'
    add "tasks: createTime one day" $task \
        "{\"createTimeStart\":$from,\"createTimeEnd\":$to,\"pageNum\":1,\"pageSize\":10}"
    add "tasks: createTime 24 h from 10:10" $task \
        "{\"createTimeStart\":$mfrom,\"createTimeEnd\":$mto,\"pageNum\":1,\"pageSize\":10}"
    add "tasks: createTime week + status 已完成" $task \
        "{\"createTimeStart\":$wfrom,\"createTimeEnd\":$to,\"status\":\"已完成\",\"pageNum\":1,\"pageSize\":10}"
    add "deep: tasks createTime week, page 1000 of 10" $task \
        "{\"createTimeStart\":$wfrom,\"createTimeEnd\":$to,\"pageNum\":1000,\"pageSize\":10}"
    add "deep: tasks status 已停止, page 1000 of 10" $task \
        '{"status":"已停止","pageNum":1000,"pageSize":10}'
    add "tasks: batchName default + createTime week + status 已完成" $task \
        "{\"batchName\":\"default\",\"createTimeStart\":$wfrom,\"createTimeEnd\":$to,\"status\":\"已完成\",\"pageNum\":1,\"pageSize\":10}"
    add "deep: tasks batchName default + createTime week, page 1000 of 10" $task \
        "{\"batchName\":\"default\",\"createTimeStart\":$wfrom,\"createTimeEnd\":$to,\"pageNum\":1000,\"pageSize\":10}"
    local i name body total ratio
    for i in "${!names[@]}"; do
        name=${names[$i]} body=${bodies[$i]}
        if [[ $body == *LAST* ]]; then
            total=$(check_total "${paths[$i]}" "${body/LAST/1}")
            body=${body/LAST/$(((total + 9) / 10))}
        fi
        total=$(check_total "${paths[$i]}" "$body")
        list_bench "$backend" "$h" "filters: $name (total $total)" "${paths[$i]}" "$body"
        name="filters: $name (total $total)"
        ratio=$(awk -v a="${RPS[$name]}" -v f="$floor" 'BEGIN { printf "%.1f", 100 * a / f }')
        local pass="" target="≥ 25 %"
        [[ $backend == sqlite ]] && pass=$(verdict "$(ge "$ratio" 25)")
        [[ $backend == sqlite ]] || target="(reported)"
        result "$backend" "$h" "target: p99 @1 conn, req/s ÷ /healthz" "${P99_1[$name]} ms, $ratio" "%" "" "" "" "≤ 10 ms; $target" \
            "$(verdict "$(le "${P99_1[$name]}" 10)")${pass:+, $pass}"
    done
}

# --- one backend at one size -----------------------------------------------------------

make_db() {
    local backend=$1 size=$2
    if [[ -n $DATABASE ]]; then
        DB_URL=$DATABASE
        return
    fi
    case $backend in
        sqlite)
            rm -rf "$WORKDIR/sqlite-$size"
            mkdir -p "$WORKDIR/sqlite-$size"
            DB_URL="sqlite://$WORKDIR/sqlite-$size/callcenter.db"
            ;;
        postgres)
            local db="bench_${size}_$$"
            psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
            psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db" >/dev/null
            PG_DBS+=("$db")
            DB_URL="$PG_URL/$db"
            ;;
        *) die "unknown backend $backend" ;;
    esac
}

drop_db() {
    local backend=$1 size=$2
    [[ $KEEP == 0 && -z $DATABASE ]] || return 0
    case $backend in
        sqlite) rm -rf "$WORKDIR/sqlite-$size" ;;
        postgres)
            psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS bench_${size}_$$ WITH (FORCE)" >/dev/null
            ;;
    esac
}

# SQL on the benchmark's database, beside the running server.
db_exec() {
    case $DB_URL in
        sqlite://*) sqlite3 "${DB_URL#sqlite://}" ".timeout 60000" "$1" >/dev/null ;;
        *) psql -q "$DB_URL" -c "$1" >/dev/null ;;
    esac
}

# pg_vacuum BACKEND SIZE WHEN: on PostgreSQL, VACUUM (ANALYZE) what the runs changed, as
# autovacuum would between them (the test server here runs with autovacuum = off: without
# this, dead index entries of stopped tasks pile up and the dialer crawls). Timed.
pg_vacuum() {
    [[ $1 == postgres ]] || return 0
    local t0=$EPOCHREALTIME
    psql -q "$DB_URL" -c "VACUUM (ANALYZE) tasks, call_records, record_stats" >/dev/null
    result "$1" "$2" "VACUUM (ANALYZE) $3" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "s" "" "" "" "" ""
}

bench_one() {
    local backend=$1 size=$2 tasks=$(($2 / TASK_RATIO)) h
    h=$(human "$size")
    log "=== $backend, $size records, $tasks tasks"
    make_db "$backend" "$size"
    rm -rf "$WORKDIR/recordings"

    if want seed; then
        log "seeding"
        local seedlog=$WORKDIR/seed-$backend-$size.log
        (cd "$WORKDIR" && CALLCENTER__DATABASE__URL="$DB_URL" CALLCENTER__LOG__FORMAT=json \
            "$BIN" seed --records "$size" --tasks "$tasks") >"$seedlog" 2>&1 ||
            { tail -5 "$seedlog" >&2; die "seed failed"; }
        local rate secs
        rate=$(jq -r 'select(.fields.message == "seeded") | .fields.rows_per_sec' "$seedlog" | tail -1)
        secs=$(jq -r 'select(.fields.message == "seeded") | .fields.seconds' "$seedlog" | tail -1)
        result "$backend" "$h" "seed" "$rate" "rows/s (${secs} s)" "" "" "" "" ""
        if [[ $backend == postgres ]]; then
            # What autovacuum does within minutes of a bulk load: planner statistics and the
            # visibility map. Without them the plans of a freshly seeded database are not
            # the plans of a running one. Then the checkpoint the load is owed: else it
            # writes the loaded gigabytes out during the measurements that follow (a p99 of
            # 73 ms in one list run at 10M, against 6 ms in the next).
            local t0=$EPOCHREALTIME
            psql -q "$DB_URL" -c "VACUUM (ANALYZE)" -c "CHECKPOINT" >/dev/null
            result "$backend" "$h" "VACUUM (ANALYZE) and CHECKPOINT after seed" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "s" "" "" "" "" ""
        fi
    fi

    if want startup; then
        # The production shape: dialer on (nothing is due in seeded data). Three starts;
        # the verdict is on the median.
        local times=() i rss hwm
        for i in 1 2 3; do
            start_server "startup-$i"
            times+=("$SRV_READY_MS")
            if [[ $i == 1 ]]; then
                sleep 2
                rss=$(proc_kb "$SRV_PID" VmRSS)
                hwm=$(proc_kb "$SRV_PID" VmHWM)
            fi
            stop_server
        done
        local median
        median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
        result "$backend" "$h" "ready (spawn → /readyz 200), median of 3" "$median" "ms (${times[*]})" "" "" "" "≤ 200 ms" "$(verdict "$(le "$median" 200)")"
        local mb
        mb=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
        result "$backend" "$h" "idle RSS after ready" "$mb" "MB (peak $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }'))" "" "" "" "≤ 30 MB" "$(verdict "$(le "$mb" 30)")"
    fi

    if want http || want filters || want create || want dialer || want campaigns || want rss; then
        start_server serve-lists CALLCENTER__DIALER__ENABLED=false
    fi

    if want http; then
        log "HTTP floor and list endpoints (${DURATION} s each, $CONNECTIONS connections; then 1 connection)"
        BENCH_BODY="" wrk_run "$BASE/healthz" "$CONNECTIONS" "$THREADS" "$DURATION"
        local floor=$W_RPS
        result "$backend" "$h" "GET /healthz" "$W_RPS" "req/s" "$W_P50" "$W_P99" "" "" ""

        local day from to
        day=$(TZ=Asia/Shanghai date -d yesterday +%F)
        from="$day 00:00:00"
        to="$day 23:59:59"
        local rec=/api/aicall/records/list
        local body_a="{\"callType\":\"02\",\"calloutTimeStart\":\"$from\",\"calloutTimeEnd\":\"$to\",\"pageNum\":1,\"pageSize\":10}"
        local body_b='{"callType":"02","pageNum":1,"pageSize":10}'
        local total_a deep phone
        total_a=$(check_total $rec "$body_a")
        ((total_a > 0)) || die "no records on $day"
        deep=$(((total_a + 9) / 10))
        ((deep <= 1000)) || deep=1000
        local body_d="{\"callType\":\"02\",\"calloutTimeStart\":\"$from\",\"calloutTimeEnd\":\"$to\",\"pageNum\":$deep,\"pageSize\":10}"
        phone=$(post $rec "$body_d" | jq -r '.rows[0].telephone')
        [[ $phone =~ ^[0-9]+$ ]] || die "no telephone on page $deep"
        local body_c="{\"callType\":\"02\",\"telephone\":\"$phone\",\"pageNum\":1,\"pageSize\":10}"
        (($(check_total $rec "$body_c") > 0)) || die "telephone $phone not found"
        check_total $rec "$body_b" >/dev/null

        list_bench "$backend" "$h" "records (a) callType + day $day, page 1" $rec "$body_a"
        list_bench "$backend" "$h" "records (b) callType only, page 1" $rec "$body_b"
        list_bench "$backend" "$h" "records (c) telephone exact" $rec "$body_c"
        list_bench "$backend" "$h" "records (d) callType + day, page $deep of 10" $rec "$body_d"

        local task=/api/aicall/calltask/list ticket
        local body_t1='{"pageNum":1,"pageSize":10}'
        local body_t3='{"pageNum":1000,"pageSize":10}'
        ticket=$(post $task "$body_t3" | jq -r '.rows[0].ticketNo')
        [[ -n $ticket && $ticket != null ]] || die "no task on page 1000"
        local body_t2="{\"pageNum\":1,\"pageSize\":10,\"ticketNo\":\"$ticket\"}"
        list_bench "$backend" "$h" "calltask/list page 1" $task "$body_t1"
        list_bench "$backend" "$h" "calltask/list by ticketNo" $task "$body_t2"
        list_bench "$backend" "$h" "calltask/list page 1000 of 10" $task "$body_t3"

        # The targets on these rows.
        local a="records (a) callType + day $day, page 1" b="records (b) callType only, page 1"
        local c="records (c) telephone exact" d="records (d) callType + day, page $deep of 10"
        result "$backend" "$h" "target: (a) p99" "${P99[$a]}" "ms" "" "" "" "≤ 10 ms at 10M" "$(verdict "$(le "${P99[$a]}" 10)")"
        result "$backend" "$h" "target: (b) p99 (with its total)" "${P99[$b]}" "ms" "" "" "" "≤ 10 ms at 10M" "$(verdict "$(le "${P99[$b]}" 10)")"
        result "$backend" "$h" "target: (c) p99" "${P99[$c]}" "ms" "" "" "" "≤ 10 ms at 10M" "$(verdict "$(le "${P99[$c]}" 10)")"
        local ratio
        ratio=$(awk -v d="${P99[$d]}" -v a="${P99[$a]}" 'BEGIN { printf "%.2f", d / a }')
        result "$backend" "$h" "target: (d) p99 ÷ (a) p99" "$ratio" "×" "" "" "" "≤ 3×" "$(verdict "$(le "$ratio" 3)")"
        ratio=$(awk -v a="${RPS[$a]}" -v f="$floor" 'BEGIN { printf "%.1f", 100 * a / f }')
        result "$backend" "$h" "target: (a) req/s ÷ /healthz" "$ratio" "%" "" "" "" "≥ 25 %" "$(verdict "$(ge "$ratio" 25)")"
    fi

    if want filters; then
        bench_filters "$backend" "$h"
    fi

    if want create; then
        log "createTasks, 1000 tickets a request, $CREATE_CONNECTIONS connections, ${DURATION} s"
        local before after first last
        before=$(task_total 待呼叫)
        first=$(post /api/aicall/calltask/list '{"pageNum":1,"pageSize":1}' | jq -r '.rows[0].batchId // 10000')
        BENCH_PREFIX="B$$-$backend-$size" BENCH_TICKETS=1000 \
            wrk_run "$BASE/api/aicall/createTasks" "$CREATE_CONNECTIONS" 1 "$DURATION" "$HERE/lua/create_tasks.lua"
        after=$(task_total 待呼叫)
        local tps=$((W_RPS * 1000)) made=$((after - before))
        if ((made < W_REQ * 1000 || made > (W_REQ + CREATE_CONNECTIONS) * 1000)); then
            log "warning: wrk counted $W_REQ requests but $made tasks were created"
        fi
        local target="" pass=""
        if [[ $backend == sqlite ]]; then
            target="≥ 50,000 tickets/s"
            pass=$(verdict "$(ge "$tps" 50000)")
        fi
        result "$backend" "$h" "createTasks (1000 tickets/request)" "$tps" "tickets/s" "$W_P50" "$W_P99" "" "$target" "$pass"
        # stopTasks once, over the newest 10,000 of them (informative).
        last=$(post /api/aicall/calltask/list '{"pageNum":1,"pageSize":1}' | jq -r '.rows[0].batchId')
        local lo=$((last - 9999 > first ? last - 9999 : first + 1)) t0=$EPOCHREALTIME answer
        answer=$(post /api/aicall/stopTasks "{\"batchIds\":[$(seq -s, "$lo" "$last")]}")
        [[ $(jq -r .code <<<"$answer") == 0 ]] || die "stopTasks: ${answer:0:300}"
        result "$backend" "$h" "stopTasks, $((last - lo + 1)) batchIds in one request" \
            "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')" "ms ($(jq -r .msg <<<"$answer"))" "" "" "" "" ""
        # The rest in SQL, so that the dialer runs below call only their own tasks (through
        # the API, 10,000 at a time, this took minutes on PostgreSQL).
        db_exec "UPDATE tasks SET status = 'stopped', stopped_ms = $(date +%s%3N)
                 WHERE status = 'pending' AND batch_id > $first"
        (($(task_total 待呼叫) == before)) || die "tasks created by the createTasks run are still waiting"
        pg_vacuum "$backend" "$h" "after createTasks and the stop"
    fi

    if want dialer; then
        log "dialer: $DIALER_TASKS tasks at time_scale 0"
        make_tickets "D$$-$backend-$size" "$DIALER_TASKS" "$WORKDIR/dialer-tickets"
        create_from "$WORKDIR/dialer-tickets"
        rm -rf "$WORKDIR/dialer-tickets"
        dialer_throughput dialer
        local cps=$DIALER_CPS secs=$DIALER_SECS
        local target="" pass=""
        if [[ $backend == sqlite ]]; then
            target="≥ 2,000 calls/s"
            pass=$(verdict "$(ge "$cps" 2000)")
        fi
        local polled="calls/s ($secs s)"
        ((POLL_ERRORS == 0)) || polled="calls/s ($secs s; $POLL_ERRORS polls of calltask/list answered an error)"
        result "$backend" "$h" "dialer, time_scale 0, $DIALER_TASKS calls" "$cps" "$polled" "" "" "" "$target" "$pass"
        stop_server
        pg_vacuum "$backend" "$h" "after the dialer run"
        if want campaigns || want rss; then start_server serve-after-dialer CALLCENTER__DIALER__ENABLED=false; fi
    fi

    if want campaigns; then
        # The same run with the tasks in one campaign and spread over 20: a claim reads
        # each campaign's due tasks by the campaign's own index, so 20 should cost next to
        # nothing.
        local one=0 twenty=0 n
        for n in 1 20; do
            log "dialer: $DIALER_TASKS tasks in $n campaign(s) at time_scale 0"
            make_tickets "K$$-$backend-$size-$n" "$DIALER_TASKS" "$WORKDIR/campaign-tickets" "$n"
            create_from "$WORKDIR/campaign-tickets"
            rm -rf "$WORKDIR/campaign-tickets"
            dialer_throughput "campaigns-$n"
            local polled="calls/s ($DIALER_SECS s)"
            ((POLL_ERRORS == 0)) || polled="calls/s ($DIALER_SECS s; $POLL_ERRORS polls answered an error)"
            result "$backend" "$h" "dialer, time_scale 0, $DIALER_TASKS calls in $n campaign(s)" "$DIALER_CPS" "$polled" "" "" "" "" ""
            if ((n == 1)); then one=$DIALER_CPS; else twenty=$DIALER_CPS; fi
            pg_vacuum "$backend" "$h" "after the dialer run in $n campaign(s)"
            start_server "serve-after-campaigns-$n" CALLCENTER__DIALER__ENABLED=false
        done
        local ratio
        ratio=$(awk -v a="$twenty" -v b="$one" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        result "$backend" "$h" "dialer with 20 campaigns against 1" "$ratio" "× (calls/s ratio)" "" "" "" "≥ 0.90" "$(verdict "$(ge "$ratio" 0.9)")"
        if ! want rss; then stop_server; fi
    fi

    if want rss; then
        local n=$((RSS_CALLS + RSS_CALLS / 2))
        log "memory: $RSS_CALLS calls in progress ($n tasks)"
        make_tickets "R$$-$backend-$size" "$n" "$WORKDIR/rss-tickets"
        create_from "$WORKDIR/rss-tickets"
        rm -rf "$WORKDIR/rss-tickets"
        stop_server
        start_server rss CALLCENTER__SIM__TIME_SCALE=1 CALLCENTER__DIALER__CALLS_PER_SECOND="$RSS_CALLS" \
            CALLCENTER__DIALER__MAX_CONCURRENT_CALLS="$RSS_CALLS" CALLCENTER__DIALER__SHUTDOWN_GRACE_SECS=0
        local t0=$EPOCHREALTIME calling=0 rss hwm
        POLL_ERRORS=0
        while :; do
            poll_total 呼叫中
            calling=${POLL_TOTAL:-$calling}
            ((calling < RSS_CALLS)) || break
            awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 120) }' &&
                die "memory: only $calling calls in progress after 120 s"
            sleep 0.2
        done
        rss=$(proc_kb "$SRV_PID" VmRSS)
        hwm=$(proc_kb "$SRV_PID" VmHWM)
        local ramp mb
        ramp=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
        mb=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')
        local note="MB (RSS now $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }'); ${ramp} s to reach"
        ((POLL_ERRORS == 0)) || note="$note; $POLL_ERRORS polls of calltask/list answered an error"
        result "$backend" "$h" "peak RSS, $calling calls in progress" "$mb" "$note)" "" "" "" "≤ 256 MB" "$(verdict "$(le "$mb" 256)")"
        # Hanging all of them up at once (shutdown, grace 0): informative.
        STOP_HWM=$hwm
        on_stop_tick() {
            local k
            k=$(proc_kb "$SRV_PID" VmHWM 2>/dev/null) || return 0
            [[ -n $k ]] && ((k > STOP_HWM)) && STOP_HWM=$k
            return 0
        }
        local s0=$EPOCHREALTIME
        stop_server 120
        unset -f on_stop_tick
        result "$backend" "$h" "peak RSS incl. hanging up all at shutdown" "$(awk -v k="$STOP_HWM" 'BEGIN { printf "%.1f", k / 1024 }')" "MB ($(awk -v a="$s0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s to stop)" "" "" "" "" ""
    fi

    stop_server
    drop_db "$backend" "$size"
}

# --- run -------------------------------------------------------------------------------

STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
for backend in $BACKENDS; do
    for size in $SIZES; do
        bench_one "$backend" "$size"
    done
done

render() {
    echo "callcenter benchmark, $STARTED, $VERSION"
    echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "wrk: ${DURATION} s per run, $THREADS threads, $CONNECTIONS connections (createTasks: $CREATE_CONNECTIONS); p99@1conn: 1 thread, 1 connection, ${LIGHT_SECS} s"
    echo
    echo "| backend | records | measure | result | p50 ms | p99 ms | p99 ms @1 conn | target | verdict |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    awk -F'\t' '{ printf "| %s | %s | %s | %s %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$RESULTS"
}
echo
render
if [[ -n $OUT ]]; then render >"$OUT"; fi
