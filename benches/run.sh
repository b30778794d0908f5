#!/usr/bin/env bash
# simgate side by side with direct access, nginx and HAProxy, on loopback,
# every figure from the same run. See benches/README.md.
#
#   benches/run.sh            full run (a few minutes), writes docs/PERFORMANCE.md
#   benches/run.sh --quick    keep-alive run (well under a minute of load),
#                             writes $CARGO_TARGET_DIR/bench/PERFORMANCE.quick.md
#
# Options (defaults in brackets):
#   --runs N          repetitions of every measurement; medians are reported [3]
#   --rate R          offered rate of the GET latency runs, requests/s [1000]
#   --patch-rate R    offered rate of the PATCH latency runs, requests/s [100]
#   --rate-secs S     length of each fixed-rate run [4]
#   --sat-secs S      length of each saturation run [3]
#   --conns C         connections of the saturation runs [32]
#   --out FILE        where the markdown report goes
#   --no-pin          do not pin the proxy and the load generator to cores
#   --no-install      do not install missing tools (fail instead)
#   --no-build        use the existing release binary and minimal proxy
#   --upstream U      what the proxies forward to: `static` (nginx answering
#                     one fixed JSON, on the load generator's core) or
#                     `reference` (simgate's reference SIM Integrations API) [static]
#   --baseline-bin B  also measure simgate binary B (passthrough and full
#                     stack) side by side, e.g. a build from before a change
#   --profile         after the measurements, profile simgate passthrough and
#                     full stack with perf under wrk load (needs linux-perf)
#   --profile-secs S  length of each profile [5]
#   --preliminary     mark the report as preliminary
#   --keep            keep the work folder (configs, logs, raw results)
#   --upstream-bin B  run `B upstream --listen ADDR` as the reference upstream
#                     instead of the simgate binary just built
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/jwt.sh
source "$HERE/lib/jwt.sh"

RUNS=3 RATE=1000 PATCH_RATE=100 RATE_SECS=4 SAT_SECS=3 CONNS=32 RATE_CONNS=16
QUICK=0 PIN=1 INSTALL=1 BUILD=1 KEEP=0 PRELIMINARY=0 OUT="" UPSTREAM_BIN=""
UPSTREAM_KIND=static BASELINE_BIN="" PROFILE=0 PROFILE_SECS=5
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --patch-rate) PATCH_RATE=$2; shift ;;
    --rate-secs) RATE_SECS=$2; shift ;;
    --sat-secs) SAT_SECS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-pin) PIN=0 ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --preliminary) PRELIMINARY=1 ;;
    --keep) KEEP=1 ;;
    --upstream-bin) UPSTREAM_BIN=$2; shift ;;
    --upstream) UPSTREAM_KIND=$2; shift ;;
    --baseline-bin) BASELINE_BIN=$2; shift ;;
    --profile) PROFILE=1 ;;
    --profile-secs) PROFILE_SECS=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    RUNS=1 RATE=500 PATCH_RATE=100 RATE_SECS=1 SAT_SECS=1
fi
case $UPSTREAM_KIND in static | reference) ;; *) die "--upstream: static or reference" ;; esac
[ -z "$BASELINE_BIN" ] || [ -x "$BASELINE_BIN" ] || die "--baseline-bin: $BASELINE_BIN is not executable"

# --- tools -------------------------------------------------------------------
export PATH="$PATH:$HOME/.cargo/bin"
APT_UPDATED=0
need_apt() { # need_apt COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    [ "$INSTALL" = 1 ] || die "$1 is missing (package $2)"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}
need_apt haproxy haproxy
need_apt nginx nginx
need_apt wrk wrk
need_apt curl curl
need_apt jq jq
need_apt openssl openssl
need_apt xxd xxd
need_apt taskset util-linux
need_apt python3 python3
need_apt h2load nghttp2-client
need_apt redis-server redis-server
need_apt redis-cli redis-tools
[ "$PROFILE" = 0 ] || need_apt perf linux-perf

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet --bin simgate --example minimal_proxy)
fi
if [ "$QUICK" = 1 ]; then
    OUT=${OUT:-$TARGET_DIR/bench/PERFORMANCE.quick.md}
fi
OUT=${OUT:-$REPO/docs/PERFORMANCE.md}
SIMGATE=$TARGET_DIR/release/simgate
[ -x "$SIMGATE" ] || die "$SIMGATE not found (build with cargo build --release)"
UPSTREAM_BIN=${UPSTREAM_BIN:-$SIMGATE}
MINIMAL=$TARGET_DIR/release/examples/minimal_proxy
[ -x "$MINIMAL" ] || die "$MINIMAL not found (cargo build --release --example minimal_proxy)"

# --- work folder, clean-up ---------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/simgate-bench.XXXXXX")
on_exit() {
    local rc=$?
    cleanup
    if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
        log "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/nginx-tmp" "$WORK/nginx-upstream-tmp" "$WORK/logs" "$WORK/raw"
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# --- cores -------------------------------------------------------------------
NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    # The server under test gets core 0 to itself; the load generator and
    # the upstream share the others. Each server then runs one worker.
    SUT_CPU=0 LOAD_CPU=1-$((NCPU - 1)) WORKERS=1
else
    PIN=0 SUT_CPU="" LOAD_CPU="" WORKERS=$NCPU
fi
if [ -n "$SUT_CPU" ]; then
    SUT_ON=(taskset -c "$SUT_CPU") LOAD_ON=(taskset -c "$LOAD_CPU")
else
    SUT_ON=() LOAD_ON=()
fi
CLK_TCK=$(getconf CLK_TCK)

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE with @KEY@ replaced.
render() {
    python3 - "$@" <<'PY'
import sys
src, dst, *pairs = sys.argv[1:]
text = open(src).read()
for pair in pairs:
    k, v = pair.split("=", 1)
    text = text.replace("@" + k + "@", v)
open(dst, "w").write(text)
PY
}

# --- issuer and tokens -------------------------------------------------------
ISS=https://idp.simgate.bench AUD=simgate KID=bench-rsa-1 ROLE=ORG_ADMIN
RATE_LIMIT=1000000 # requests per client per second (HAProxy: per 10 s): never reached
jwt_issuer "$WORK" "$KID"
NOW=$(date +%s)
claims() { # claims SUB ROLES_JSON
    printf '{"iss":"%s","aud":"%s","sub":"%s","client_id":"%s","authorities":%s,"scope":"%s","iat":%d,"nbf":%d,"exp":%d,"jti":"bench-%s-%d"}' \
        "$ISS" "$AUD" "$1" "$1" "$2" \
        "sp:scopes:all idn:service-desk-integration:read idn:service-desk-integration:manage" \
        "$NOW" "$NOW" $((NOW + 7200)) "$1" "$NOW"
}
TOKEN=$(jwt_token "$WORK/signing-key.pem" "$KID" "$(claims bench-client "[\"$ROLE\"]")")
NOROLE_TOKEN=$(jwt_token "$WORK/signing-key.pem" "$KID" "$(claims bench-norole '["NO_SUCH_ROLE"]')")
# The valid token with one signature character changed.
SIG=${TOKEN##*.}
FLIP=A
[ "${SIG:10:1}" != A ] || FLIP=B
FORGED_TOKEN=${TOKEN%.*}.${SIG:0:10}$FLIP${SIG:11}

# --- the reference upstream --------------------------------------------------
UP_PORT=$(free_port)
UPSTREAM=127.0.0.1:$UP_PORT
spawn upstream "$WORK/logs/upstream.log" env RUST_LOG=warn \
    "${LOAD_ON[@]}" "$UPSTREAM_BIN" upstream --listen "$UPSTREAM"
UP_PID=$SPAWN_PID
wait_http "http://$UPSTREAM/sim-integrations/v1" "$UP_PID" ||
    die "reference upstream did not start: $(tail -5 "$WORK/logs/upstream.log")"

SEED='{"name":"bench-integration","description":"seeded by benches/run.sh","type":"ServiceNow Service Desk","cluster":"xyzzy999","sources":["2c9180835d191a86015d28455b4a2329"],"attributes":{"uid":"bench"},"statusMap":{"closed_complete":"Committed","in_process":"Queued"}}'
ID=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$SEED" \
    "http://$UPSTREAM/sim-integrations/v1" | jq -r '.id // empty') ||
    die "seeding the upstream failed"
[ -n "$ID" ] || die "seeding the upstream returned no id"
ITEM=/sim-integrations/v1/$ID
PATCH_BODY='[{"op":"replace","path":"/description","value":"patched by benches/run.sh"}]'
PATCH_CTYPE=application/json-patch+json
log "seeded integration $ID"

# The static upstream: nginx with one fixed JSON answer, on the load core.
if [ "$UPSTREAM_KIND" = static ]; then
    STATIC_PORT=$(free_port)
    render "$HERE/conf/nginx-upstream.conf" "$WORK/nginx-upstream.conf" \
        DIR="$WORK" PORT="$STATIC_PORT" ID="$ID"
    spawn static-upstream "$WORK/logs/static-upstream.log" \
        "${LOAD_ON[@]}" nginx -c "$WORK/nginx-upstream.conf" -p "$WORK"
    UP_PID=$SPAWN_PID
    UPSTREAM=127.0.0.1:$STATIC_PORT
    wait_http "http://$UPSTREAM$ITEM" "$UP_PID" ||
        die "static upstream did not start: $(cat "$WORK/nginx-upstream-error.log" 2>/dev/null)"
fi
log "proxies forward to the $UPSTREAM_KIND upstream at $UPSTREAM"

# --- the servers under test --------------------------------------------------
declare -A URL PGID STATE NOTE IDLE_KB
CONFIGS=()

add_config() { # add_config NAME URL PGID
    CONFIGS+=("$1")
    URL[$1]=$2 PGID[$1]=$3 STATE[$1]=ok NOTE[$1]=""
}

add_config direct "http://$UPSTREAM" "$UP_PID"

start_nginx() {
    local port
    port=$(free_port)
    render "$HERE/conf/nginx.conf" "$WORK/nginx.conf" \
        WORKERS="$WORKERS" DIR="$WORK" UPSTREAM="$UPSTREAM" PORT="$port"
    nginx -t -q -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/logs/nginx-check.log" ||
        die "nginx config refused: $(cat "$WORK/logs/nginx-check.log")"
    spawn nginx "$WORK/logs/nginx.log" "${SUT_ON[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK"
    add_config nginx "http://127.0.0.1:$port" "$SPAWN_PID"
}

start_haproxy() {
    local port
    port=$(free_port)
    render "$HERE/conf/haproxy.cfg" "$WORK/haproxy.cfg" \
        THREADS="$WORKERS" PORT="$port" UPSTREAM="$UPSTREAM" PUBKEY="$WORK/public-key.pem" \
        ISS="$ISS" AUD="$AUD" ROLE="$ROLE" RATE_LIMIT="$RATE_LIMIT"
    haproxy -c -q -f "$WORK/haproxy.cfg" >"$WORK/logs/haproxy-check.log" 2>&1 ||
        die "haproxy config refused: $(cat "$WORK/logs/haproxy-check.log")"
    spawn haproxy "$WORK/logs/haproxy.log" "${SUT_ON[@]}" haproxy -db -f "$WORK/haproxy.cfg"
    add_config haproxy "http://127.0.0.1:$port" "$SPAWN_PID"
}

# start_simgate NAME TEMPLATE [AUDIT_FLUSH [AUTH_CACHE]]: renders the config, leaves out
# the layer parts the binary refuses (see accept_layers), starts it.
declare -A LAYERS_ON LAYERS_OFF
# RATE_LIMIT_STORE (lines added to [rate_limit], e.g. the Redis store).
# Settings through the environment: SIMGATE_BIN (the binary, default the
# one just built), LOG_LEVEL (warn: no access log; info: the access log, to
# a file, as the default config writes it), SERVER_EXTRA (lines added to
# [server], e.g. the runtime model; empty for a baseline binary that may not
# know the keys).
start_simgate() {
    local name=$1 template=$2 flush=${3:-batch} cache=${4:-10000} port conf
    local bin=${SIMGATE_BIN:-$SIMGATE} level=${LOG_LEVEL:-warn}
    port=$(free_port)
    conf=$WORK/$name.toml
    render "$HERE/conf/$template" "$WORK/$name.full.toml" \
        PORT="$port" UPSTREAM="$UPSTREAM" DIR="$WORK" REPO="$REPO" ISS="$ISS" AUD="$AUD" \
        RATE_LIMIT="$RATE_LIMIT" AUDIT_FLUSH="$flush" AUTH_CACHE="$cache" CONFIG_NAME="$name" \
        LOG_LEVEL="$level" SERVER_EXTRA="${SERVER_EXTRA:-}" RATE_LIMIT_STORE="${RATE_LIMIT_STORE:-}"
    SIMGATE_CHECK=$bin accept_layers "$WORK/$name.full.toml" "$conf" "$name"
    spawn "$name" "$WORK/logs/$name.log" env RUST_LOG="$level" \
        "${SUT_ON[@]}" "$bin" serve --config "$conf"
    add_config "$name" "http://127.0.0.1:$port" "$SPAWN_PID"
}

start_minimal() {
    local port
    port=$(free_port)
    spawn minimal "$WORK/logs/minimal.log" "${SUT_ON[@]}" "$MINIMAL" "127.0.0.1:$port" "$UPSTREAM"
    add_config minimal "http://127.0.0.1:$port" "$SPAWN_PID"
}

# accept_layers FULL OUT NAME: FULL as is when `simgate check` accepts it;
# else without the one "# layer:" part whose removal makes it pass; else the
# longest run of leading parts that passes. Records the parts kept and left
# out in LAYERS_ON / LAYERS_OFF.
accept_layers() {
    local full=$1 out=$2 name=$3 parts=() kept=() i n p
    python3 - "$full" "$WORK/parts.$name" <<'PY'
import sys, os
text = open(sys.argv[1]).read()
os.makedirs(sys.argv[2], exist_ok=True)
chunks = text.split("\n# layer: ")
open(os.path.join(sys.argv[2], "00-head"), "w").write(chunks[0] + "\n")
for i, chunk in enumerate(chunks[1:], 1):
    name, _, body = chunk.partition("\n")
    open(os.path.join(sys.argv[2], f"{i:02d}-{name.strip()}"), "w").write(body)
PY
    for p in "$WORK/parts.$name"/[0-9][0-9]-*; do
        [ "${p##*/}" = 00-head ] || parts+=("$p")
    done
    n=${#parts[@]}
    layers_ok() { # layers_ok PART...: does head + these parts pass the check?
        cat "$WORK/parts.$name/00-head" "$@" >"$out"
        "${SIMGATE_CHECK:-$SIMGATE}" check --config "$out" >"$WORK/logs/$name.check" 2>&1
    }
    if layers_ok "${parts[@]}"; then
        kept=("${parts[@]}")
    else
        log "$name: config refused: $(grep -v '^ *$' "$WORK/logs/$name.check" | tail -1)"
        for ((i = 0; i < n; i++)); do
            if layers_ok "${parts[@]:0:i}" "${parts[@]:i+1}"; then
                kept=("${parts[@]:0:i}" "${parts[@]:i+1}")
                break
            fi
        done
        if [ ${#kept[@]} = 0 ]; then
            for ((i = n - 1; i >= 0; i--)); do
                if layers_ok "${parts[@]:0:i}"; then
                    kept=("${parts[@]:0:i}")
                    break
                fi
            done
            [ $i -ge 0 ] || die "$name: even the config without layers is refused: $(tail -3 "$WORK/logs/$name.check")"
        fi
    fi
    layers_ok "${kept[@]}" || die "$name: config refused"
    LAYERS_ON[$name]="" LAYERS_OFF[$name]=""
    for p in "${parts[@]}"; do
        if [[ " ${kept[*]} " == *" $p "* ]]; then
            LAYERS_ON[$name]+="${LAYERS_ON[$name]:+ }${p##*/[0-9][0-9]-}"
        else
            LAYERS_OFF[$name]+="${LAYERS_OFF[$name]:+ }${p##*/[0-9][0-9]-}"
        fi
    done
    [ -z "${LAYERS_OFF[$name]}" ] || log "$name: layers left out: ${LAYERS_OFF[$name]}"
}

start_nginx
start_haproxy
start_minimal
start_simgate simgate-pass simgate-passthrough.toml
SERVER_EXTRA='runtime = "work-stealing"' start_simgate simgate-pass-ws simgate-passthrough.toml
start_simgate simgate-full simgate-full.toml batch
LOG_LEVEL=info start_simgate simgate-full-log simgate-full.toml batch
start_simgate simgate-full-always simgate-full.toml always
start_simgate simgate-full-nocache simgate-full.toml batch 0
# The full stack with per-client quotas in Redis (one EVALSHA per request),
# Redis on the load generator's cores like the upstream. on_error = "deny":
# a store failure shows as failed requests, never as a silent local count.
start_redis() {
    local port i
    port=$(free_port)
    spawn redis "$WORK/logs/redis.log" "${LOAD_ON[@]}" redis-server --port "$port" \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK"
    for i in $(seq 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        [ "$i" = 100 ] && die "redis-server did not answer: $(tail -3 "$WORK/logs/redis.log")"
        sleep 0.1
    done
    REDIS_PORT=$port
}
start_redis
RATE_LIMIT_STORE=$(printf 'store = "redis"\n[rate_limit.redis]\nurl = "redis://127.0.0.1:%s/0"\non_error = "deny"\n' "$REDIS_PORT") \
    start_simgate simgate-full-redis simgate-full.toml batch
if [ -n "$BASELINE_BIN" ]; then
    SIMGATE_BIN=$BASELINE_BIN start_simgate simgate-pass-base simgate-passthrough.toml
    SIMGATE_BIN=$BASELINE_BIN start_simgate simgate-full-base simgate-full.toml batch
fi

for c in "${CONFIGS[@]}"; do
    wait_http "${URL[$c]}$ITEM" "${PGID[$c]}" ||
        die "$c did not start: $(tail -5 "$WORK/logs/$c.log" 2>/dev/null)"
done

# --- sanity: every configuration answers, and the guarded ones guard --------
code() { # code URL METHOD TOKEN [BODY]: the HTTP status of one request
    local args=(-s -o /dev/null -w '%{http_code}' --max-time 5 -X "$2")
    [ -z "$3" ] || args+=(-H "Authorization: Bearer $3")
    [ -z "${4:-}" ] || args+=(-H "Content-Type: $PATCH_CTYPE" --data-binary "$4")
    curl "${args[@]}" "$1" || true
}
for c in "${CONFIGS[@]}"; do
    get=$(code "${URL[$c]}$ITEM" GET "$TOKEN")
    patch=$(code "${URL[$c]}$ITEM" PATCH "$TOKEN" "$PATCH_BODY")
    if [ "$get" != 200 ] || [ "$patch" != 200 ]; then
        case $c in
        simgate-full*)
            STATE[$c]=failed NOTE[$c]="GET $get, PATCH $patch with a valid token"
            log "$c: ${NOTE[$c]}: left out of the measurements"
            continue
            ;;
        *) die "$c: GET $get, PATCH $patch with a valid token" ;;
        esac
    fi
    guarded=0
    case $c in
    haproxy) guarded=1 ;;
    simgate-full*) [[ " ${LAYERS_ON[$c]} " == *" auth "* ]] && guarded=1 ;;
    esac
    if [ "$guarded" = 1 ]; then
        anon=$(code "${URL[$c]}$ITEM" GET "")
        forged=$(code "${URL[$c]}$ITEM" GET "$FORGED_TOKEN")
        norole=$(code "${URL[$c]}$ITEM" GET "$NOROLE_TOKEN")
        if [ "$anon" != 401 ] || [ "$forged" != 401 ] || { [ "$norole" != 403 ] && [ "$norole" != 401 ]; }; then
            NOTE[$c]="guard check: no token → $anon, forged signature → $forged, token without the role → $norole"
            log "$c: ${NOTE[$c]}"
        else
            log "$c: refuses no token ($anon), a forged signature ($forged), a token without the role ($norole)"
        fi
    fi
    IDLE_KB[$c]=$(mem_kb "${PGID[$c]}" VmRSS)
done
log "all servers up; idle RSS (kB):$(for c in "${CONFIGS[@]}"; do printf ' %s=%s' "$c" "${IDLE_KB[$c]:-?}"; done)"

# --- measurements ------------------------------------------------------------
proc_busy() { # proc_busy: "busy total" jiffies of the whole machine
    awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat
}

# measure CONFIG WORKLOAD KIND REP [quiet]: one run, one line in RESULTS.
measure() {
    local c=$1 w=$2 kind=$3 rep=$4 record=${5:-yes}
    local url=${URL[$1]}$ITEM pg=${PGID[$1]} raw=$WORK/raw/$1.$2.$3.$4
    local method=GET ctype="" body="" secs rate=$RATE
    if [ "$w" = patch ]; then method=PATCH ctype=$PATCH_CTYPE body=$PATCH_BODY rate=$PATCH_RATE; fi
    [ "$c" = direct ] && [ "$PIN" = 1 ] && pin "$SUT_CPU" "$UP_PID"
    local t0 u0 m0 w0 t1 u1 m1 w1 rc=0
    t0=$(cpu_ticks "$pg") u0=$(cpu_ticks "$UP_PID") m0=$(proc_busy) w0=$(date +%s%N)
    TIMEFORMAT='%3U %3S'
    if [ "$kind" = rate ]; then
        secs=$RATE_SECS
        # h2load over HTTP/1.1: RATE_CONNS connections, each sending at
        # rate/RATE_CONNS requests per second; every request's latency goes
        # to its --log-file.
        local per_conn args
        per_conn=$(awk -v r="$rate" -v c="$RATE_CONNS" 'BEGIN { printf "%g", r / c }')
        args=(-p http/1.1 -c "$RATE_CONNS" --rps "$per_conn" -D "$secs" -T 5
            -H "authorization: Bearer $TOKEN" --log-file "$raw.log")
        if [ -n "$body" ]; then
            printf '%s' "$body" >"$raw.body"
            args+=(-H ":method: $method" -H "content-type: $ctype" -d "$raw.body")
        fi
        { time timeout $((secs + 30)) "${LOAD_ON[@]}" h2load "${args[@]}" "$url" \
            >"$raw.h2load" 2>"$raw.err"; } 2>"$raw.time" || rc=$?
        [ "$rc" != 0 ] || python3 "$HERE/lib/h2load.py" "$raw.h2load" "$raw.log" >"$raw.out" || rc=$?
    else
        secs=$SAT_SECS
        { time BENCH_METHOD=$method BENCH_TOKEN=$TOKEN BENCH_BODY=$body BENCH_CTYPE=$ctype \
            timeout $((secs + 30)) "${LOAD_ON[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s \
            -s "$HERE/wrk/request.lua" "$url" >"$raw.out" 2>"$raw.err"; } 2>"$raw.time" || rc=$?
        grep '^BENCH_JSON ' "$raw.out" | sed 's/^BENCH_JSON //' >"$raw.json" || true
        mv "$raw.json" "$raw.out.json"
    fi
    t1=$(cpu_ticks "$pg") u1=$(cpu_ticks "$UP_PID") m1=$(proc_busy) w1=$(date +%s%N)
    [ "$c" = direct ] && [ "$PIN" = 1 ] && pin "$LOAD_CPU" "$UP_PID"
    [ "$rc" = 0 ] || die "$c $w $kind: load generator failed ($rc): $(tail -3 "$raw.err" "$raw.h2load" 2>/dev/null)"
    alive "$pg" || die "$c died: $(tail -5 "$WORK/logs/$c.log")"
    [ "$record" = yes ] || return 0
    local out=$raw.out
    [ "$kind" = rate ] || out=$raw.out.json
    jq -c --arg config "$c" --arg workload "$w" --arg kind "$kind" --argjson rep "$rep" \
        --argjson offered_rate "$rate" --argjson secs "$secs" \
        --argjson ticks $((t1 - t0)) --argjson upstream_ticks $((u1 - u0)) \
        --argjson machine "[$(echo "$m0 $m1" | awk '{ print $3 - $1 "," $4 - $2 }')]" \
        --argjson wall_ns $((w1 - w0)) --arg loadgen_cpu "$(tail -1 "$raw.time")" \
        '{config: $config, workload: $workload, kind: $kind, rep: $rep, ticks: $ticks,
          offered_rate: (if $kind == "rate" then $offered_rate else null end), secs: $secs,
          upstream_ticks: $upstream_ticks, machine_busy_ticks: $machine[0],
          machine_total_ticks: $machine[1], wall_ns: $wall_ns,
          loadgen_cpu_s: ($loadgen_cpu | split(" ") | map(tonumber) | add),
          load: .}' "$out" >>"$RESULTS" ||
        die "$c $w $kind: unreadable load generator output: $(head -c 300 "$out")"
}

workload_configs() { # workload_configs WORKLOAD: the configurations it runs on
    local c
    for c in "${CONFIGS[@]}"; do
        [ "${STATE[$c]}" = ok ] || continue
        # Audit flush only matters for mutations; the token cache is shown
        # on the read path.
        [ "$1" = get ] && [ "$c" = simgate-full-always ] && continue
        [ "$1" = patch ] && [ "$c" = simgate-full-nocache ] && continue
        [ "$1" = patch ] && [ "$c" = simgate-full-redis ] && continue
        # The quick mode keeps the harness working; the variants add nothing to that.
        [ "$QUICK" = 1 ] && [ "$c" = simgate-full-nocache ] && continue
        [ "$QUICK" = 1 ] && [ "$c" = simgate-full-always ] && continue
        [ "$QUICK" = 1 ] && [ "$c" = simgate-full-redis ] && continue
        # The runtime model and the access log are read-path comparisons.
        [ "$1" = patch ] && [ "$c" = simgate-pass-ws ] && continue
        [ "$1" = patch ] && [ "$c" = simgate-full-log ] && continue
        echo "$c"
    done
}

START=$(date +%s)
if [ "$QUICK" = 0 ]; then
    log "warm-up (1 s per configuration and workload, not recorded)"
    SAT_SECS_SAVED=$SAT_SECS SAT_SECS=1
    for w in get patch; do
        for c in $(workload_configs $w); do measure "$c" "$w" sat 0 no; done
    done
    SAT_SECS=$SAT_SECS_SAVED
fi
# Repetitions go round all configurations, so that a burst of load from
# elsewhere on the machine spreads over them instead of hitting one.
for rep in $(seq "$RUNS"); do
    for w in get patch; do
        for c in $(workload_configs $w); do
            log "run $rep/$RUNS: $c $w (fixed rate for ${RATE_SECS}s, then saturation for ${SAT_SECS}s)"
            measure "$c" "$w" rate "$rep"
            measure "$c" "$w" sat "$rep"
        done
    done
done
ELAPSED=$(($(date +%s) - START))

# Where the raw figures and profiles are kept.
# (Not `$([ "$QUICK" = 1 ] && echo -quick)`: under `set -e` its status 1
# ends a full run right here.)
RAW=$TARGET_DIR/bench/last
if [ "$QUICK" = 1 ]; then RAW=$RAW-quick; fi

# --- profile (optional) ------------------------------------------------------
# perf on the pinned server while wrk saturates it; DWARF call graphs (the
# release build keeps line tables and unwind info, not frame pointers).
PROFILES=()
median_us() { # median_us CONFIG: median CPU µs per request of its GET saturation runs
    python3 - "$RESULTS" "$1" "$CLK_TCK" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
v = [r["ticks"] / int(sys.argv[3]) / r["load"]["requests"] * 1e6 for r in runs
     if r["config"] == sys.argv[2] and r["workload"] == "get" and r["kind"] == "sat" and r["load"]["requests"]]
print(f"{statistics.median(v):.2f}" if v else "")
PY
}
profile() { # profile CONFIG
    local c=$1 pg=${PGID[$1]} data=$WORK/perf.$1.data out=$WORK/profile/$1 wrk_pid us
    mkdir -p "$WORK/profile"
    log "profiling $c for ${PROFILE_SECS}s under wrk"
    BENCH_METHOD=GET BENCH_TOKEN=$TOKEN BENCH_BODY="" BENCH_CTYPE="" \
        timeout $((PROFILE_SECS + 30)) "${LOAD_ON[@]}" wrk -t1 -c"$CONNS" -d"$((PROFILE_SECS + 2))s" \
        --timeout 5s -s "$HERE/wrk/request.lua" "${URL[$c]}$ITEM" >"$out.wrk" 2>&1 &
    wrk_pid=$!
    sleep 1
    timeout $((PROFILE_SECS + 60)) perf record -q -F 499 -g --call-graph dwarf,16384 \
        -p "$pg" -o "$data" -- sleep "$PROFILE_SECS" >"$out.record.log" 2>&1 ||
        die "perf record failed: $(tail -3 "$out.record.log")"
    wait "$wrk_pid" || die "wrk failed while profiling $c"
    perf report -i "$data" --no-children --stdio --sort symbol --percent-limit 0.7 \
        2>/dev/null | grep -v '^$' | head -400 >"$out.report.txt" || true
    us=$(median_us "$c")
    perf script -i "$data" 2>/dev/null |
        FOLDED=$out.folded python3 "$HERE/lib/perf_summary.py" "$us" >"$out.summary.md" ||
        die "perf script failed for $c"
    PROFILES+=("$c")
}
if [ "$PROFILE" = 1 ]; then
    for c in minimal simgate-pass simgate-full; do
        if [ "${STATE[$c]:-}" = ok ]; then profile "$c"; fi
    done
fi

# --- report ------------------------------------------------------------------
# What one fsync costs where the audit trail was written (context for PATCH).
FSYNC_MS=$(dd if=/dev/zero of="$WORK/fsync-probe" bs=512 count=50 oflag=dsync 2>&1 |
    awk '/copied/ { printf "%.2f", $(NF-3) * 1000 / 50 }') || FSYNC_MS=""
rm -f "$WORK/fsync-probe"
declare -A PEAK_KB
for c in "${CONFIGS[@]}"; do PEAK_KB[$c]=$(mem_kb "${PGID[$c]}" VmHWM); done

version() { "$@" 2>&1 | head -1 || true; }
{
    jq -n \
        --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        --arg cpu "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)" \
        --arg ncpu "$NCPU" --arg mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')" \
        --arg kernel "$(uname -sr)" --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
        --arg simgate "$(version "$SIMGATE" --version)" \
        --arg commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --arg dirty "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -1)" \
        --arg nginx "$(version nginx -v)" --arg haproxy "$(version haproxy -v)" \
        --arg wrk "$(version wrk -v)" --arg h2load "$(version h2load --version)" --arg upstream "$UPSTREAM_KIND" \
        --argjson runs "$RUNS" --argjson rate "$RATE" --argjson patch_rate "$PATCH_RATE" \
        --argjson rate_secs "$RATE_SECS" --arg fsync_ms "$FSYNC_MS" \
        --argjson sat_secs "$SAT_SECS" --argjson conns "$CONNS" --argjson rate_conns "$RATE_CONNS" \
        --argjson pin "$PIN" --arg sut_cpu "$SUT_CPU" --arg load_cpu "$LOAD_CPU" \
        --argjson workers "$WORKERS" --argjson quick "$QUICK" --argjson preliminary "$PRELIMINARY" \
        --argjson clk_tck "$CLK_TCK" --argjson elapsed "$ELAPSED" \
        --arg load_before "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '$ARGS.named'
    for c in "${CONFIGS[@]}"; do
        jq -nc --arg config "$c" --arg state "${STATE[$c]}" --arg note "${NOTE[$c]}" \
            --arg layers_on "${LAYERS_ON[$c]:-}" --arg layers_off "${LAYERS_OFF[$c]:-}" \
            --argjson idle_kb "${IDLE_KB[$c]:-0}" --argjson peak_kb "${PEAK_KB[$c]:-0}" \
            '$ARGS.named'
    done
} | jq -s '{meta: .[0], configs: .[1:]}' >"$WORK/meta.json"

mkdir -p "$(dirname "$OUT")" "$RAW"
cp "$RESULTS" "$WORK/meta.json" "$RAW/"
python3 "$HERE/lib/report.py" "$WORK/meta.json" "$RESULTS" >"$WORK/report.md"
if [ ${#PROFILES[@]} -gt 0 ]; then
    {
        printf '\n## Profiles (perf, %s s each under wrk saturation, `perf record -F 499 -g --call-graph dwarf`)\n\n' "$PROFILE_SECS"
        printf 'Shares of the samples of the pinned server process. µs per request: the share times the CPU per request measured above (GET, saturation; perf itself is not in that figure). Full `perf report --no-children` output and folded stacks (flamegraph input) in %s/profile/.\n\n' "$RAW"
        for c in "${PROFILES[@]}"; do
            printf '### %s\n\n' "${c}"
            cat "$WORK/profile/$c.summary.md"
            printf '\n'
        done
    } >>"$WORK/report.md"
    mkdir -p "$RAW/profile"
    cp "$WORK"/profile/* "$RAW/profile/"
fi
# Into OUT: between the markers when OUT has them (the hand-written analysis
# around them stays, the generated part goes one heading level down), else
# the whole file.
python3 - "$OUT" "$WORK/report.md" <<'PY'
import os, sys
out, gen = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- benches/run.sh: begin -->", "<!-- benches/run.sh: end -->"
old = open(out).read() if os.path.exists(out) else ""
if begin in old and end in old:
    head, rest = old.split(begin, 1)
    tail = rest.split(end, 1)[1]
    gen = "".join("#" + l if l.startswith("#") else l for l in gen.splitlines(True))
    text = head + begin + "\n" + gen + "\n" + end + tail
else:
    text = gen
open(out, "w").write(text)
PY
log "report written to $OUT (raw figures in $RAW/); load took ${ELAPSED}s"
