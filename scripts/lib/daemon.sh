# Sourced by broker.sh and clickhouse.sh: a background service on 127.0.0.1, known by its PID
# file, awaited by probing it and stopped by PID. The sourcing script defines `die`.

# wait_ready PID PIDFILE LOG NAME TIMEOUT_S PROBE...: returns once `PROBE...` succeeds; dies
# (cleaning up) if the process exits first or the timeout passes.
wait_ready() {
    local pid="$1" pidfile="$2" log="$3" name="$4" timeout="$5"
    shift 5
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            tail -n 20 "$log" >&2 || true
            die "$name exited during startup (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            rm -f "$pidfile"
            die "$name did not answer within ${timeout}s (log: $log)"
        fi
        sleep 0.05 # probe interval, not a guess at readiness
    done
}

# stop_one PIDFILE GRACE_STEPS: SIGTERM, up to GRACE_STEPS × 50 ms to exit, then SIGKILL.
stop_one() {
    local pidfile="$1" steps="$2" pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq "$steps"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# stop_started PREFIX GRACE_STEPS [PORT]: the one started on PORT, or every one started here.
stop_started() {
    local prefix="$1" steps="$2" port="${3:-}"
    if [[ -n "$port" ]]; then
        [[ -f "$RUN/$prefix-$port.pid" ]] || die "nothing started here on port $port"
        stop_one "$RUN/$prefix-$port.pid" "$steps"
        return
    fi
    shopt -s nullglob
    local f
    for f in "$RUN/$prefix"-*.pid; do stop_one "$f" "$steps"; done
}
