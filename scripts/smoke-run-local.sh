#!/usr/bin/env bash
# Smoke test of the README's run command, as a user runs it: starts scripts/run-local.sh (in its
# own process group, output to a log), waits for its banner, runs the commands the banner suggests
# with the printed KUBECONFIG and kubectl (list, delete example-stop and check it was released
# through DeleteInstance), then interrupts the script as Ctrl-C does (SIGINT to its process group)
# and checks that no process it started and no state directory is left.
#
# Also checks first that run-local.sh refuses a port that is taken, before it starts anything.
# Uses free ports (not the defaults, and below the ephemeral range the test suite draws from).
# Needs python3 (as scripts/test.sh does) to read the simulator's JSON.
#
# SMOKE_BANNER_TIMEOUT: seconds to wait for the banner (default 600: a cold debug build on two
# cores takes minutes). Exits non-zero with the reason and the tail of the log on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BANNER_TIMEOUT=${SMOKE_BANNER_TIMEOUT:-600}
NAMESPACE=ecs-samples
started_at=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/ecs-smoke.XXXXXX")
log=$work/run-local.log
: > "$log"
pgid=''
listener=''

say() { echo "smoke: $*"; }
ok() { echo "smoke:   ok: $*"; }
fail() {
  echo "smoke: FAILED: $*" >&2
  echo "smoke: --- scripts/run-local.sh output (last 60 lines of $log) ---" >&2
  tail -n 60 "$log" >&2 || true
  echo "smoke: --- end of output; the log stays in $work ---" >&2
  exit 1
}

# Runs a command, shows its output indented; returns its status.
shown() {
  "$@" > "$work/out.txt" 2>&1 && status=0 || status=$?
  sed 's/^/smoke:   /' "$work/out.txt"
  return "$status"
}

alive() { [ -d "/proc/$1" ] && [ "$(proc_state "$1")" != Z ]; }
# Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses).
proc_fields() { local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; echo "${stat##*) }"; }
proc_state() { local f; f=$(proc_fields "$1") || return 1; set -- $f; echo "$1"; }
proc_ppid() { local f; f=$(proc_fields "$1") || return 1; set -- $f; echo "$2"; }
proc_pgrp() { local f; f=$(proc_fields "$1") || return 1; set -- $f; echo "$3"; }
proc_name() { basename "$(readlink "/proc/$1/exe" 2>/dev/null || echo "?")"; }
proc_args() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | cut -c1-150; }

# Every live process in process group $1 or descended from process $1.
group_and_descendants() {
  local root=$1 pid
  declare -A parent=()
  local all=()
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    alive "$pid" || continue
    all+=("$pid")
    parent[$pid]=$(proc_ppid "$pid" || echo 0)
  done
  for pid in "${all[@]}"; do
    if [ "$(proc_pgrp "$pid" || echo 0)" = "$root" ]; then echo "$pid"; continue; fi
    local p=$pid
    while [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != 1 ]; do
      p=${parent[$p]:-}
      [ "$p" = "$root" ] && { echo "$pid"; break; }
    done
  done
  return 0
}

# Stops the script's process group if a failure left it running.
on_exit() {
  local status=$?
  [ -n "$listener" ] && kill "$listener" 2>/dev/null || true
  if [ -n "$pgid" ] && kill -0 "$pgid" 2>/dev/null; then
    say "stopping scripts/run-local.sh (process group $pgid) after a failure"
    kill -INT -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pgid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  [ "$status" = 0 ] && rm -rf "$work"
  exit "$status"
}
trap on_exit EXIT
trap 'fail "line $LINENO: \"$BASH_COMMAND\" failed"' ERR
trap 'exit 130' INT TERM

port_taken() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
picked=()
pick_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 10000))
    [[ " ${picked[*]} " == *" $port "* ]] && continue
    port_taken "$port" && continue
    picked+=("$port")
    return 0
  done
  fail "found no free port between 20000 and 29999"
}
pick_port; pick_port; pick_port; pick_port
export SIM_ADDR=127.0.0.1:${picked[0]} METRICS_ADDR=127.0.0.1:${picked[1]} HEALTH_ADDR=127.0.0.1:${picked[2]}
say "ports: SIM_ADDR=$SIM_ADDR METRICS_ADDR=$METRICS_ADDR HEALTH_ADDR=$HEALTH_ADDR"

tmp=${TMPDIR:-/tmp}
leftovers=$(
  for dir in "$tmp"/ecs-local.*; do [ -e "$dir" ] && echo "  $dir"; done
  for dir in "$tmp"/ecs-testenv-*; do
    [ -e "$dir" ] || continue
    alive "${dir##*ecs-testenv-}" || echo "  $dir (its process is gone)"
  done
)
if [ -n "$leftovers" ]; then
  say "note: state directories of earlier runs exist (killed runs, or another user's):"
  echo "$leftovers"
fi

say "check 1: run-local.sh refuses a port that is taken, before it starts anything"
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("ready", flush=True); time.sleep(120)' \
  "${picked[3]}" > "$work/listener.out" &
listener=$!
for _ in $(seq 1 50); do grep -q ready "$work/listener.out" 2>/dev/null && break; sleep 0.1; done
refused_at=$SECONDS
if HEALTH_ADDR=127.0.0.1:${picked[3]} timeout 60 bash scripts/run-local.sh > "$work/refused.log" 2>&1 < /dev/null; then
  cat "$work/refused.log" >&2
  fail "run-local.sh started although HEALTH_ADDR=127.0.0.1:${picked[3]} was taken"
fi
grep -q "HEALTH_ADDR=127.0.0.1:${picked[3]} is already in use" "$work/refused.log" ||
  { cat "$work/refused.log" >&2; fail "run-local.sh failed without saying that HEALTH_ADDR is in use"; }
grep -q "In another terminal" "$work/refused.log" && fail "run-local.sh printed the banner although a port was taken"
ok "exit non-zero after $((SECONDS - refused_at)) s: $(head -1 "$work/refused.log")"
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true
listener=''

say "check 2: scripts/run-local.sh starts (log: $log; waiting up to $BANNER_TIMEOUT s for the banner, a cold build takes minutes)"
set -m # its own process group, SIGINT not ignored: like a command started from a terminal
bash scripts/run-local.sh > "$log" 2>&1 < /dev/null &
pgid=$!
set +m
[ "$(proc_pgrp "$pgid")" = "$pgid" ] || fail "run-local.sh did not get a process group of its own"
waited=0
until grep -q '^  alias kubectl=' "$log"; do
  kill -0 "$pgid" 2>/dev/null || { wait "$pgid" && status=0 || status=$?; pgid=''; fail "run-local.sh exited ($status) before printing the banner"; }
  [ "$waited" -ge "$BANNER_TIMEOUT" ] && fail "no banner after $BANNER_TIMEOUT s"
  if [ $((waited % 60)) = 0 ] && [ "$waited" -gt 0 ]; then say "  still waiting for the banner (${waited} s): $(tail -n 1 "$log" | cut -c1-120)"; fi
  sleep 1
  waited=$((waited + 1))
done
ok "banner after ${waited} s"

KUBECONFIG=$(sed -n 's/^  export KUBECONFIG=//p' "$log" | head -n 1)
kubectl_bin=$(sed -n "s/^  alias kubectl='\(.*\)'\$/\1/p" "$log" | head -n 1)
state=$(sed -n 's/^Logs of the control plane and the simulator: //p' "$log" | head -n 1)
state=${state%/}
run_dir=$(dirname "$KUBECONFIG")
[ -f "$KUBECONFIG" ] || fail "the banner's KUBECONFIG ($KUBECONFIG) is not a file"
[ -x "$kubectl_bin" ] || fail "the banner's kubectl ($kubectl_bin) is not executable"
[ -d "$state" ] || fail "the banner's log directory ($state) is not a directory"
export KUBECONFIG
kubectl() { "$kubectl_bin" "$@"; }
ok "KUBECONFIG=$KUBECONFIG, kubectl=$kubectl_bin, script state $state, control plane state $run_dir"

mode=$(stat -c %a "$run_dir")
[ "$mode" = 700 ] || fail "the control plane's state directory $run_dir has mode $mode, not 700"
for key in "$run_dir"/pki/*.key; do
  mode=$(stat -c %a "$key")
  [ "$mode" = 600 ] || fail "$key has mode $mode, not 600"
done
ok "state directory mode 700, private keys ($(cd "$run_dir/pki" && echo *.key)) mode 600"

say "the processes it started:"
expected=(bash local-control-plane etcd kube-apiserver ecs-sim ecs-instance-controller)
for _ in $(seq 1 30); do
  pids=($(group_and_descendants "$pgid" | sort -n))
  names=" "
  for pid in "${pids[@]}"; do names+="$(proc_name "$pid") "; done
  missing=()
  for name in "${expected[@]}"; do [[ "$names" == *" $name "* ]] || missing+=("$name"); done
  [ "${#missing[@]}" = 0 ] && break
  sleep 1
done
for pid in "${pids[@]}"; do printf 'smoke:   %7s %-24s %s\n' "$pid" "$(proc_name "$pid")" "$(proc_args "$pid")"; done
[ "${#missing[@]}" = 0 ] || fail "not running after 30 s: ${missing[*]}"

say "check 3: the banner's commands"
say "\$ kubectl get ecsi -n $NAMESPACE"
shown kubectl get ecsi -n "$NAMESPACE" || fail "kubectl get ecsi failed"
grep -q '^example-stop ' "$work/out.txt" || fail "kubectl get ecsi does not list example-stop"
say "\$ kubectl wait --for=condition=Ready ecsi/example-stop -n $NAMESPACE  (the controller has seen it)"
shown kubectl wait --for=condition=Ready ecsi/example-stop -n "$NAMESPACE" --timeout=120s ||
  fail "example-stop did not become Ready within 120 s"
finalizers=$(kubectl get ecsi example-stop -n "$NAMESPACE" -o jsonpath='{.metadata.finalizers}')
[ -n "$finalizers" ] || fail "example-stop has no finalizer"
ok "finalizers: $finalizers"

say "\$ kubectl delete ecsi example-stop -n $NAMESPACE"
delete_at=$SECONDS
shown kubectl delete ecsi example-stop -n "$NAMESPACE" --timeout=180s ||
  fail "kubectl delete ecsi example-stop failed or timed out"
ok "returned after $((SECONDS - delete_at)) s"
if kubectl get ecsi example-stop -n "$NAMESPACE" > "$work/after.txt" 2>&1; then
  fail "example-stop still exists after kubectl delete returned"
fi
grep -q NotFound "$work/after.txt" || { cat "$work/after.txt" >&2; fail "kubectl get ecsi example-stop failed, but not with NotFound"; }
ok "example-stop is gone: $(head -n 1 "$work/after.txt")"

say "\$ curl http://$SIM_ADDR/_sim/calls?action=DeleteInstance  (read with python3)"
python3 - "http://$SIM_ADDR" i-examplestop0001 <<'PY' || fail "the simulator does not show example-stop released"
import json, sys, urllib.error, urllib.request
base, instance = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
calls = json.load(opener.open(f"{base}/_sim/calls?action=DeleteInstance", timeout=10))
mine = [c for c in calls if (c.get("params") or {}).get("InstanceId") == instance]
for c in mine:
    print(f"smoke:   seq {c['seq']} {c['action']} {instance} -> HTTP {c['httpStatus']} {c.get('code') or ''} RequestId {c['requestId']}")
if not any(c.get("httpStatus") == 200 for c in mine):
    sys.exit(f"smoke: no accepted DeleteInstance for {instance} in the call log ({len(calls)} DeleteInstance calls)")
try:
    instance_state = json.load(opener.open(f"{base}/_sim/instances/{instance}", timeout=10))
    if not instance_state.get("released"):
        sys.exit(f"smoke: {instance} is not released in the simulator: {instance_state}")
    print(f"smoke:   {instance}: released (lingering as {instance_state.get('status')})")
except urllib.error.HTTPError as e:
    if e.code != 404:
        raise
    print(f"smoke:   {instance}: gone from the simulator (404)")
PY
ok "DeleteInstance for i-examplestop0001 accepted, the instance is released"

say "check 4: SIGINT to the process group of run-local.sh (what Ctrl-C does)"
stop_at=$SECONDS
kill -INT -- "-$pgid"
for _ in $(seq 1 600); do kill -0 "$pgid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pgid" 2>/dev/null && fail "run-local.sh still runs 60 s after SIGINT"
wait "$pgid" && status=0 || status=$?
pgid_done=$pgid
pgid=''
ok "run-local.sh exited ($status) after $((SECONDS - stop_at)) s"
[ "$status" = 130 ] || fail "run-local.sh exited with $status after SIGINT, expected 130"
sleep 1 # processes reparented to init are reaped by it
left=()
for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid $(proc_name "$pid")"); done
for pid in $(group_and_descendants "$pgid_done"); do
  [[ " ${pids[*]} " == *" $pid "* ]] || left+=("$pid $(proc_name "$pid") (in its process group)")
done
if [ "${#left[@]}" -gt 0 ]; then
  printf 'smoke:   left running: %s\n' "${left[@]}" >&2
  for entry in "${left[@]}"; do kill -KILL "${entry%% *}" 2>/dev/null || true; done
  fail "processes started by run-local.sh are still running after it exited"
fi
ok "none of the ${#pids[@]} processes is left"
for dir in "$state" "$run_dir"; do
  [ -e "$dir" ] && fail "$dir is left behind"
done
ok "no state directory is left ($state, $run_dir)"

say "OK: scripts/run-local.sh built, started, released an instance and stopped cleanly ($((SECONDS - started_at)) s)"
