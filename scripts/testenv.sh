#!/usr/bin/env bash
# Member-cluster test environment: real kube-apiservers (each with its own etcd
# and kube-controller-manager) on 127.0.0.1, built from released Go modules.
#
#   scripts/testenv.sh build      build (or reuse) the binaries pinned in testenv/go.mod
#   scripts/testenv.sh start N    start N member clusters, wait until they are ready
#   scripts/testenv.sh stop       stop everything `start` started, remove the state dir
#   scripts/testenv.sh env        print shell exports (kubeconfigs, binaries)
#   scripts/testenv.sh status     show clusters, pids, ports and readiness
#   scripts/testenv.sh check      exit 0 if the binaries are built, else say how to build them
#
# Environment:
#   TESTENV_DIR        state dir of one environment (default ${TMPDIR:-/tmp}/tmc-testenv-$UID)
#   TMC_CACHE_DIR      cache root for binaries and Go caches (default ${XDG_CACHE_HOME:-$HOME/.cache}/tmc)
#   GO                 go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   TESTENV_OWNER_PID  if set at `start`, a watchdog stops the environment once that process is gone
#   TESTENV_READY_TIMEOUT  seconds `start` waits for readiness (default 90)
#
# See docs/testing.md, "Member-cluster test environment".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/testenv.sh"
MODDIR="$ROOT/testenv"
CACHE_ROOT="${TMC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tmc}"
STATE_DIR="${TESTENV_DIR:-${TMPDIR:-/tmp}/tmc-testenv-$(id -u)}"
PORTS_DIR="${TMPDIR:-/tmp}/tmc-testenv-ports"
MARKER=".tmc-testenv"
READY_TIMEOUT="${TESTENV_READY_TIMEOUT:-90}"
SERVICE_CIDR="10.0.0.0/24"

die() { echo "testenv: error: $*" >&2; exit 1; }
log() { echo "testenv: $*" >&2; }

# ---------------------------------------------------------------- versions

# The pinned versions come from testenv/go.mod, the one source of truth.
mod_version() { # module path -> version in the require block
  awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 }
                 $1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$MODDIR/go.mod"
}

[[ -f "$MODDIR/go.mod" ]] || die "missing $MODDIR/go.mod"
K8S_VERSION="$(mod_version k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version go.etcd.io/etcd/server/v3)"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" ]] || die "cannot read the k8s.io/kubernetes / etcd versions from $MODDIR/go.mod"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"

BUILD_FLAGS="CGO_ENABLED=0 -trimpath -ldflags=-s -w +version-vars"
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)

build_key() {
  # Changes whenever anything that goes into the binaries changes.
  local h
  h="$( { echo "$BUILD_FLAGS"; cat "$MODDIR/go.mod" "$MODDIR/go.sum" "$MODDIR/etcd/main.go"; } | sha256sum | cut -c1-12)"
  echo "k8s-$K8S_VERSION-etcd-$ETCD_VERSION-$h"
}
BUILD_KEY="$(build_key)"
BIN_DIR="$CACHE_ROOT/testenv/$BUILD_KEY/bin"
STAMP="$BIN_DIR/.stamp"

built() {
  [[ -f "$STAMP" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

not_built_message() {
  cat <<EOF
testenv: the member-cluster binaries are not built for the pinned versions
  (kube-apiserver/kube-controller-manager/kubectl $K8S_VERSION, etcd $ETCD_VERSION; expected in $BIN_DIR).
  Build them once with:  scripts/testenv.sh build
  (needs Go >= 1.24 and the Go module proxy; the first build takes about 10 minutes on 2 idle cores,
  later builds with the same pins are a no-op).
EOF
}

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  die "no Go toolchain: install Go >= 1.24 or set GO=/path/to/go"
}

cmd_build() {
  local t0 t1
  t0=$(date +%s.%N)
  if built; then
    t1=$(date +%s.%N)
    log "binaries up to date in $BIN_DIR (no-op, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s)"
    return 0
  fi
  local go; go="$(find_go)"
  command -v nice >/dev/null || die "nice not found"
  export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build"
  export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  mkdir -p "$GOMODCACHE" "$GOCACHE" "$CACHE_ROOT/testenv"
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION and etcd $ETCD_VERSION with $("$go" version)"
  log "  (Go caches in $CACHE_ROOT/go; output in $BIN_DIR)"
  local v="k8s.io/component-base/version" cv="k8s.io/client-go/pkg/version"
  local ldflags="-s -w"
  local pkg
  for pkg in "$v" "$cv"; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local tmp="$CACHE_ROOT/testenv/.build-$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  (
    cd "$MODDIR"
    nice -n "${TESTENV_NICE:-19}" "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl \
      ./etcd
  ) || die "go build failed (see above)"
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$tmp/$b" ]] || die "go build did not produce $b"; done
  {
    echo "key=$BUILD_KEY"
    echo "k8s=$K8S_VERSION"
    echo "etcd=$ETCD_VERSION"
    echo "go=$("$go" env GOVERSION)"
    echo "flags=$BUILD_FLAGS"
  } > "$tmp/.stamp"
  rm -rf "$BIN_DIR"; mkdir -p "$(dirname "$BIN_DIR")"
  mv "$tmp" "$BIN_DIR"
  trap - EXIT
  # Binaries of other pins are ~300 MB each; the Go caches make rebuilding them cheap.
  local old
  for old in "$CACHE_ROOT"/testenv/k8s-*; do
    [[ "$old" == "$CACHE_ROOT/testenv/$BUILD_KEY" ]] || rm -rf "$old"
  done
  t1=$(date +%s.%N)
  log "built ${BINARIES[*]} in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s -> $BIN_DIR"
}

cmd_check() {
  if built; then echo "$BIN_DIR"; return 0; fi
  not_built_message >&2
  return 1
}

# ---------------------------------------------------------------- processes

# Start time of a process (field 22 of /proc/PID/stat), to tell our process
# from a later one that reuses its pid.
proc_starttime() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  awk '{ print $20 }' <<<"$stat"
}

# exists PIDFILE: true while the process recorded in PIDFILE (pid + start
# time) is in the process table, zombie or not.
exists() {
  local pid st now
  read -r pid st < "$1" 2>/dev/null || return 1
  [[ -n "$pid" ]] || return 1
  now="$(proc_starttime "$pid")" || return 1
  [[ "$now" == "$st" ]]
}

# alive PIDFILE: true if the process recorded in PIDFILE still runs (a zombie has exited).
alive() {
  local pid st state
  exists "$1" || return 1
  read -r pid st < "$1"
  state="$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || return 1
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# spawn NAME DIR CMD...: start CMD in its own session, log to DIR/NAME.log, record DIR/NAME.pid.
spawn() {
  local name="$1" dir="$2"; shift 2
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  local pid=$!
  echo "$pid $(proc_starttime "$pid")" > "$dir/$name.pid"
  echo "$dir/$name.pid" >> "$STATE_DIR/pids"
}

# ---------------------------------------------------------------- ports

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alloc_port: a free loopback port, reserved (under $PORTS_DIR) until `stop`,
# so that concurrent `start`s of different state dirs never pick the same one.
alloc_port() {
  mkdir -p "$PORTS_DIR"
  local p owner tries=0
  while (( tries++ < 500 )); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))   # below the ephemeral range
    if mkdir "$PORTS_DIR/$p" 2>/dev/null; then
      if port_in_use "$p"; then rm -rf "${PORTS_DIR:?}/$p"; continue; fi
      echo "$STATE_DIR" > "$PORTS_DIR/$p/owner"
      echo "$p" >> "$STATE_DIR/ports"
      echo "$p"
      return 0
    fi
    owner="$(cat "$PORTS_DIR/$p/owner" 2>/dev/null || true)"
    if [[ -n "$owner" && ! -e "$owner/$MARKER" ]]; then rm -rf "${PORTS_DIR:?}/$p"; fi  # stale
  done
  die "could not find a free port on 127.0.0.1"
}

release_ports() {
  local p
  [[ -f "$STATE_DIR/ports" ]] || return 0
  while read -r p; do
    [[ -n "$p" ]] || continue
    if [[ "$(cat "$PORTS_DIR/$p/owner" 2>/dev/null || true)" == "$STATE_DIR" ]]; then
      rm -rf "${PORTS_DIR:?}/$p"
    fi
  done < "$STATE_DIR/ports"
}

# ---------------------------------------------------------------- certificates

gen_cluster_pki() { # DIR NAME
  local d="$1" name="$2"
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=tmc-testenv-$name-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf '%s\n' \
      "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -days 3650 \
      -set_serial "0x$(openssl rand -hex 8)" -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f apiserver.csr apiserver.ext
    umask 077
    openssl rand -hex 32 > admin.token
    openssl rand -hex 32 > kcm.token
    printf '%s,admin,admin,"system:masters"\n%s,system:kube-controller-manager,system:kube-controller-manager\n' \
      "$(cat admin.token)" "$(cat kcm.token)" > tokens.csv
  ) || die "generating certificates for $name failed"
}

write_kubeconfig() { # FILE NAME PORT CA_FILE USER TOKEN
  local f="$1" name="$2" port="$3" ca="$4" user="$5" token="$6"
  (
    umask 077
    cat > "$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 < "$ca")
users:
- name: $name-$user
  user:
    token: $token
contexts:
- name: $name
  context:
    cluster: $name
    user: $name-$user
    namespace: default
current-context: $name
EOF
  )
}

# ---------------------------------------------------------------- start

start_etcd() { # DIR NAME
  local d="$1" name="$2"
  # shellcheck disable=SC1091
  source "$d/ports.env"
  spawn etcd "$d" "$BIN_DIR/etcd" \
    --name "$name" \
    --data-dir "$d/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "$name=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --quota-backend-bytes 2147483648 \
    --log-level warn
}

start_apiserver() { # DIR NAME
  local d="$1" name="$2"
  # shellcheck disable=SC1091
  source "$d/ports.env"
  spawn kube-apiserver "$d" "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$d/apiserver.crt" \
    --tls-private-key-file "$d/apiserver.key" \
    --client-ca-file "$d/ca.crt" \
    --token-auth-file "$d/tokens.csv" \
    --authorization-mode RBAC \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    --endpoint-reconciler-type none \
    --profiling=false \
    --cert-dir "$d/apiserver-certs"
}

start_kcm() { # DIR NAME
  local d="$1" name="$2"
  spawn kube-controller-manager "$d" "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$d/kcm.kubeconfig" \
    --secure-port 0 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$d/sa.key" \
    --root-ca-file "$d/ca.crt" \
    --cluster-signing-cert-file "$d/ca.crt" \
    --cluster-signing-key-file "$d/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --controllers '*' \
    --profiling=false
}

# http_status DIR PATH: HTTP status of an authenticated GET against the cluster in DIR.
http_status() {
  local d="$1" path="$2"
  # shellcheck disable=SC1091
  source "$d/ports.env"
  curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 \
    --cacert "$d/ca.crt" -H "Authorization: Bearer $(cat "$d/admin.token")" \
    "https://127.0.0.1:$APISERVER_PORT$path" 2>/dev/null || true
}

fail_start() { # DIR WHAT
  local d="$1" what="$2" f
  log "$what"
  for f in etcd kube-apiserver kube-controller-manager; do
    if [[ -f "$d/$f.log" ]]; then
      log "---- last lines of $d/$f.log"
      tail -n 15 "$d/$f.log" >&2 || true
    fi
  done
  log "stopping what was started"
  cmd_stop >&2 || true
  exit 1
}

cmd_start() {
  [[ $# -eq 1 && "$1" =~ ^[1-9][0-9]*$ ]] || die "usage: testenv.sh start N   (N >= 1 member clusters)"
  local n="$1" i d name t0
  t0=$(date +%s.%N)
  if ! built; then not_built_message >&2; exit 3; fi
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  command -v setsid >/dev/null || die "setsid not found (apt-get install util-linux)"
  if [[ -e "$STATE_DIR/$MARKER" ]]; then
    die "an environment already exists in $STATE_DIR: run 'scripts/testenv.sh stop' (with the same TESTENV_DIR) first"
  fi
  if [[ -e "$STATE_DIR" && -n "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
    die "TESTENV_DIR=$STATE_DIR exists and is not empty; choose another dir or remove it"
  fi
  mkdir -p "$STATE_DIR"
  STATE_DIR="$(cd "$STATE_DIR" && pwd)"
  echo "$BUILD_KEY" > "$STATE_DIR/$MARKER"
  : > "$STATE_DIR/pids"; : > "$STATE_DIR/ports"; : > "$STATE_DIR/clusters"

  if [[ -n "${TESTENV_OWNER_PID:-}" ]]; then
    # Watchdog: if the owner (e.g. a test process) dies without stopping us, stop.
    # shellcheck disable=SC2016
    spawn watchdog "$STATE_DIR" env TESTENV_DIR="$STATE_DIR" bash -c \
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop' watchdog "$TESTENV_OWNER_PID" "$SELF"
  fi

  for (( i = 1; i <= n; i++ )); do
    name="member-$i"; d="$STATE_DIR/$name"
    mkdir -p "$d"
    echo "$name" >> "$STATE_DIR/clusters"
    ETCD_CLIENT_PORT="$(alloc_port)"; ETCD_PEER_PORT="$(alloc_port)"; APISERVER_PORT="$(alloc_port)"
    printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' \
      "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" > "$d/ports.env"
    gen_cluster_pki "$d" "$name"
    # shellcheck disable=SC1091
    source "$d/ports.env"
    write_kubeconfig "$d/kubeconfig" "$name" "$APISERVER_PORT" "$d/ca.crt" admin "$(cat "$d/admin.token")"
    write_kubeconfig "$d/kcm.kubeconfig" "$name" "$APISERVER_PORT" "$d/ca.crt" kcm "$(cat "$d/kcm.token")"
    start_etcd "$d" "$name"
    start_apiserver "$d" "$name"
  done

  # Wait for each apiserver, start its controller manager as soon as it is
  # ready, then wait until every cluster is usable: the system namespaces exist
  # and the controller manager has created the `default` service account.
  local deadline pending
  deadline=$(( $(date +%s) + READY_TIMEOUT ))
  local -A stage=()
  for (( i = 1; i <= n; i++ )); do stage[$i]=apiserver; done
  pending=$n
  while (( pending > 0 )); do
    for (( i = 1; i <= n; i++ )); do
      name="member-$i"; d="$STATE_DIR/$name"
      case "${stage[$i]}" in
        apiserver)
          alive "$d/etcd.pid" || fail_start "$d" "etcd of $name exited"
          alive "$d/kube-apiserver.pid" || fail_start "$d" "kube-apiserver of $name exited"
          if [[ "$(http_status "$d" /readyz)" == 200 ]]; then
            start_kcm "$d" "$name"
            stage[$i]=kcm
          fi ;;
        kcm)
          alive "$d/kube-controller-manager.pid" || fail_start "$d" "kube-controller-manager of $name exited"
          if [[ "$(http_status "$d" /api/v1/namespaces/kube-system)" == 200 &&
                "$(http_status "$d" /api/v1/namespaces/default/serviceaccounts/default)" == 200 ]]; then
            stage[$i]=ready; pending=$(( pending - 1 ))
          fi ;;
      esac
    done
    (( pending == 0 )) && break
    if (( $(date +%s) > deadline )); then
      for (( i = 1; i <= n; i++ )); do
        [[ "${stage[$i]}" == ready ]] || fail_start "$STATE_DIR/member-$i" \
          "member-$i not ready after ${READY_TIMEOUT}s (stuck waiting for ${stage[$i]}; TESTENV_READY_TIMEOUT raises the limit)"
      done
    fi
    sleep 0.25
  done
  log "$n member cluster(s) ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s (state in $STATE_DIR)"
  cmd_env
}

# ---------------------------------------------------------------- stop

cmd_stop() {
  if [[ ! -e "$STATE_DIR/$MARKER" ]]; then
    if [[ -e "$STATE_DIR" ]]; then
      die "$STATE_DIR is not a testenv state dir (no $MARKER); not touching it"
    fi
    log "nothing to stop in $STATE_DIR"
    return 0
  fi
  local f pid st targets=() left waited=0
  touch "$STATE_DIR/pids"
  while read -r f; do
    [[ -n "$f" ]] || continue
    alive "$f" || continue
    read -r pid st < "$f"
    [[ "$pid" == "$$" ]] && continue   # the watchdog that runs this stop
    targets+=("$pid")
  done < "$STATE_DIR/pids"
  # Each process leads its own process group (setsid): signal the group so
  # that nothing it may have forked survives.
  for pid in "${targets[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  while :; do
    left=()
    while read -r f; do
      [[ -n "$f" ]] || continue
      read -r pid st < "$f"
      [[ "$pid" == "$$" ]] && continue
      if alive "$f"; then left+=("$pid"); fi
    done < "$STATE_DIR/pids"
    (( ${#left[@]} == 0 )) && break
    if (( waited == 100 )); then   # 10 s after SIGTERM
      log "sending SIGKILL to ${left[*]} (still running 10 s after SIGTERM)"
      for pid in "${left[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
    fi
    (( waited < 200 )) || die "processes ${left[*]} survive SIGKILL"
    sleep 0.1; waited=$(( waited + 1 ))
  done
  # Our processes were orphaned when `start` returned, so whoever adopted them
  # (init or a subreaper) reaps them; give it a moment so that no zombie
  # outlives `stop` (this machine's init reaps about every 2 s).
  for (( waited = 0; waited < 50; waited++ )); do
    left=()
    while read -r f; do
      [[ -n "$f" ]] || continue
      read -r pid st < "$f"
      [[ "$pid" == "$$" ]] && continue
      if exists "$f"; then left+=("$pid"); fi
    done < "$STATE_DIR/pids"
    (( ${#left[@]} == 0 )) && break
    sleep 0.1
  done
  if (( ${#left[@]} > 0 )); then
    log "note: exited processes ${left[*]} are not yet reaped by their parent (zombies)"
  fi
  release_ports
  rm -rf "${STATE_DIR:?}"
  log "stopped ${#targets[@]} processes, removed $STATE_DIR"
}

# ---------------------------------------------------------------- env, status

clusters() { if [[ -f "$STATE_DIR/clusters" ]]; then cat "$STATE_DIR/clusters"; fi; }

cmd_env() {
  local name var kcs="" names=()
  echo "export TESTENV_DIR='$STATE_DIR'"
  echo "export TESTENV_BIN_DIR='$BIN_DIR'"
  echo "export TESTENV_ETCD='$BIN_DIR/etcd'"
  echo "export TESTENV_KUBE_APISERVER='$BIN_DIR/kube-apiserver'"
  echo "export TESTENV_KUBE_CONTROLLER_MANAGER='$BIN_DIR/kube-controller-manager'"
  echo "export TESTENV_KUBECTL='$BIN_DIR/kubectl'"
  echo "export TESTENV_K8S_VERSION='$K8S_VERSION'"
  echo "export TESTENV_ETCD_VERSION='$ETCD_VERSION'"
  if [[ -e "$STATE_DIR/$MARKER" ]]; then
    while read -r name; do
      [[ -n "$name" ]] || continue
      names+=("$name")
      var="TESTENV_$(echo "$name" | tr 'a-z-' 'A-Z_')_KUBECONFIG"
      echo "export $var='$STATE_DIR/$name/kubeconfig'"
      kcs="${kcs:+$kcs:}$STATE_DIR/$name/kubeconfig"
    done < <(clusters)
    echo "export TESTENV_CLUSTERS='${names[*]}'"
    echo "export KUBECONFIG='$kcs'"
  fi
}

cmd_status() {
  echo "binaries: $BIN_DIR ($(built && echo built || echo 'NOT built'))"
  echo "state:    $STATE_DIR"
  if [[ ! -e "$STATE_DIR/$MARKER" ]]; then echo "not running"; return 1; fi
  local name d p rc=0 pid st
  if [[ -f "$STATE_DIR/watchdog.pid" ]]; then
    read -r pid st < "$STATE_DIR/watchdog.pid"
    echo "watchdog: pid $pid $(alive "$STATE_DIR/watchdog.pid" && echo running || echo GONE)"
  fi
  while read -r name; do
    d="$STATE_DIR/$name"
    # shellcheck disable=SC1091
    source "$d/ports.env"
    echo "$name: https://127.0.0.1:$APISERVER_PORT readyz=$(http_status "$d" /readyz)" \
      "etcd=127.0.0.1:$ETCD_CLIENT_PORT (peer $ETCD_PEER_PORT) kubeconfig=$d/kubeconfig"
    for p in etcd kube-apiserver kube-controller-manager; do
      if [[ ! -f "$d/$p.pid" ]]; then echo "  $p: not started"; rc=1; continue; fi
      read -r pid st < "$d/$p.pid"
      if alive "$d/$p.pid"; then
        echo "  $p: pid $pid running, rss $(awk '/^VmRSS:/ { printf "%d MiB", $2/1024 }' "/proc/$pid/status")"
      else
        echo "  $p: pid $pid EXITED (log: $d/$p.log)"; rc=1
      fi
    done
  done < <(clusters)
  return $rc
}

# ---------------------------------------------------------------- main

usage() {
  sed -n '2,22p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  [[ $# -ge 1 ]] || usage
  local sub="$1"; shift
  case "$sub" in
    build) cmd_build "$@" ;;
    check) cmd_check "$@" ;;
    start) cmd_start "$@" ;;
    stop) [[ $# -eq 0 ]] || die "usage: testenv.sh stop"; cmd_stop ;;
    env) [[ $# -eq 0 ]] || die "usage: testenv.sh env"; cmd_env ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

# One line, so that bash has read the whole file before running anything
# long (a build must not pick up edits made to this file meanwhile).
main "$@"; exit $?
