#!/usr/bin/env bash
# The tmc container image, built without a Docker engine or a registry: the
# runtime stage of ./Dockerfile (Debian bookworm's minimal userland, libstdc++,
# CA certificates, user tmc 65532, /var/lib/tmc) made with mmdebstrap from the
# Debian mirror apt already uses, plus a tmc binary built on this machine,
# packed with umoci as an OCI image and written as one OCI archive (a tar of
# the OCI layout; `skopeo copy oci-archive:OUT.tar:dev docker://...`,
# `podman load -i`, `ctr images import`, `kind load image-archive`).
#
#   scripts/image.sh build OUT.tar [BINARY]   image tmc:dev with BINARY as /usr/local/bin/tmc
#                                            (default $CARGO_TARGET_DIR/release/tmc, else .../debug/tmc)
#   scripts/image.sh unpack OUT.tar DIR       the image's filesystem into DIR/rootfs (umoci unpack)
#
# Needs root (mmdebstrap's root mode, files owned by other users). Installs
# mmdebstrap and umoci with apt-get when they are missing. The base layer
# (the Debian part) is cached under $TMC_CACHE_DIR/image/<hash of what goes
# into it>, so a second build only adds the binary: seconds. TMC_IMAGE_REFRESH=1
# rebuilds the base (to pick up Debian's security updates).
# Environment: TMC_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/tmc),
# TMC_IMAGE_NAME (default tmc:dev), CARGO_TARGET_DIR.
set -euo pipefail

CACHE_ROOT="${TMC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tmc}"
IMAGE_NAME="${TMC_IMAGE_NAME:-tmc:dev}"
TAG="${IMAGE_NAME##*:}"
SUITE=bookworm
# What the runtime needs beyond Debian's Essential set (which has libc6,
# libgcc-s1 and the shell tools): see the runtime stage of ./Dockerfile.
PACKAGES=(libstdc++6 ca-certificates)
VARIANT=essential
# As debian:*-slim: no documentation, manual pages or translations.
DPKG_OPTS=(
  "path-exclude=/usr/share/doc/*" "path-include=/usr/share/doc/*/copyright"
  "path-exclude=/usr/share/man/*" "path-exclude=/usr/share/info/*"
  "path-exclude=/usr/share/locale/*" "path-exclude=/usr/share/lintian/*"
)
TMC_UID=65532

die() { echo "image.sh: error: $*" >&2; exit 1; }
log() { echo "image.sh: $*" >&2; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

need_tools() {
  [[ "$(id -u)" -eq 0 ]] || die "run as root (mmdebstrap's root mode and files owned by uid $TMC_UID need it)"
  local missing=() t
  for t in mmdebstrap umoci; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The host's Debian sources for $SUITE, main only, as one-line `deb` entries
# (from deb822 .sources files and classic .list files). The image comes from
# the same mirror as the host's packages.
host_sources() {
  local f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f "$f" ]] || continue
      awk '$1 == "deb" { u = ""; s = ""; for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
                          if (u == "") u = $i; else if (s == "") { s = $i; break } }
                          print u, s }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f "$f" ]] || continue
      awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no") { n = split(uris, U, " "); m = split(suites, S, " ");
                                for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print U[i], S[j] }
                              types = uris = suites = enabled = "" }
           /^[ \t]*$/ { flush(); next }
           /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
           /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
           /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
           /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
           END { flush() }' "$f"
    done
  } | awk -v s="$SUITE" '$2 == s || $2 ~ ("^" s "-(updates|security)$") { print "deb " $1 " " $2 " main" }' | sort -u
}

# The base layer: Debian + user + /var/lib/tmc, as an uncompressed tar.
base_layer() {
  local sources key dir t0 work
  sources="$(host_sources)"
  [[ -n "$sources" ]] || die "no Debian $SUITE source in /etc/apt/sources.list* to build the image from"
  key="$( { echo "$SUITE $VARIANT ${PACKAGES[*]} ${DPKG_OPTS[*]} uid=$TMC_UID merged-usr-hook layout=1"; echo "$sources";
            mmdebstrap --version; dpkg --print-architecture; } | sha256sum | cut -c1-16)"
  dir="$CACHE_ROOT/image/$key"
  if [[ -f "$dir/base.tar" && -z "${TMC_IMAGE_REFRESH:-}" ]]; then
    log "base layer cached: $dir/base.tar"
    echo "$dir/base.tar"; return 0
  fi
  t0=$(date +%s.%N)
  mkdir -p "$dir"
  work="$(mktemp -d "$dir/.work-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  log "building the base layer with mmdebstrap ($SUITE, $VARIANT + ${PACKAGES[*]}) from:"
  sed 's/^/image.sh:   /' <<<"$sources" >&2
  local opts=() o
  for o in "${DPKG_OPTS[@]}"; do opts+=("--dpkgopt=$o"); done
  local mirrors=()
  mapfile -t mirrors <<<"$sources"
  # The merged-usr hook makes /bin, /lib, ... links into /usr itself; without
  # it mmdebstrap installs the usrmerge package, which brings perl (30 MB).
  mmdebstrap --quiet --mode=root --variant="$VARIANT" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    "${opts[@]}" "$SUITE" "$work/rootfs" "${mirrors[@]}" >&2 \
    || die "mmdebstrap failed"
  local r="$work/rootfs"
  # What mmdebstrap leaves for apt, which the image does not have.
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/etc/apt/sources.list.d/* "$r"/etc/apt/sources.list
  rm -f "$r"/etc/machine-id "$r"/var/log/*.log
  # The user, as the Dockerfile's useradd makes it.
  grep -q "^tmc:" "$r/etc/group" || echo "tmc:x:$TMC_UID:" >> "$r/etc/group"
  grep -q "^tmc:" "$r/etc/passwd" || echo "tmc:x:$TMC_UID:$TMC_UID::/var/lib/tmc:/usr/sbin/nologin" >> "$r/etc/passwd"
  if [[ -f "$r/etc/shadow" ]] && ! grep -q "^tmc:" "$r/etc/shadow"; then echo "tmc:!:19000::::::" >> "$r/etc/shadow"; fi
  install -d -o "$TMC_UID" -g "$TMC_UID" -m 0750 "$r/var/lib/tmc"
  install -d -m 0755 "$r/usr/local/bin"
  # A reproducible tar of it (sorted, one mtime, numeric owners).
  tar -C "$r" --sort=name --numeric-owner --mtime=@0 --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$work/base.tar" .
  mv "$work/base.tar" "$dir/base.tar"
  rm -rf "$work"; trap - EXIT
  # Base layers of other inputs (an older package list or mirror) go.
  local old
  for old in "$CACHE_ROOT"/image/*/; do
    [[ "${old%/}" == "$dir" ]] || rm -rf "${old%/}"
  done
  log "base layer built in $(elapsed "$t0") s: $dir/base.tar ($(du -h "$dir/base.tar" | cut -f1))"
  echo "$dir/base.tar"
}

default_binary() {
  local t="${CARGO_TARGET_DIR:-$CACHE_ROOT/target}"
  if [[ -x "$t/release/tmc" ]]; then echo "$t/release/tmc"; else echo "$t/debug/tmc"; fi
}

cmd_build() {
  [[ $# -ge 1 && $# -le 2 ]] || die "usage: image.sh build OUT.tar [BINARY]"
  local out="$1" bin="${2:-$(default_binary)}" t0 base work
  t0=$(date +%s.%N)
  [[ -x "$bin" ]] || die "no tmc binary at $bin (build it, or pass its path)"
  need_tools
  base="$(base_layer)"
  work="$(mktemp -d "${TMPDIR:-/tmp}/tmc-image-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  # The binary's layer: usr/local/bin/tmc only.
  install -d -m 0755 "$work/bin/usr/local/bin"
  install -m 0755 "$bin" "$work/bin/usr/local/bin/tmc"
  tar -C "$work/bin" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$work/tmc.tar" usr
  local img="$work/oci"
  umoci init --layout "$img"
  umoci new --image "$img:$TAG"
  umoci raw add-layer --image "$img:$TAG" --history.created_by "mmdebstrap $SUITE ($VARIANT + ${PACKAGES[*]}), user tmc $TMC_UID" "$base"
  umoci raw add-layer --image "$img:$TAG" --history.created_by "COPY tmc /usr/local/bin/tmc" "$work/tmc.tar"
  umoci config --image "$img:$TAG" --no-history \
    --config.entrypoint /usr/local/bin/tmc --config.user "$TMC_UID:$TMC_UID" \
    --config.workingdir /var/lib/tmc \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.exposedports 6443/tcp --config.exposedports 7001/tcp \
    --config.exposedports 7002/tcp --config.exposedports 9090/tcp \
    --config.label org.opencontainers.image.source=tmc --architecture "$(dpkg --print-architecture)" --os linux
  umoci gc --layout "$img"
  # The full name for importers that read it (containerd: ctr, kind).
  python3 - "$img/index.json" "$IMAGE_NAME" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
if "/" not in name.split(":")[0] and "." not in name.split("/")[0]:
    full = "docker.io/library/" + name
else:
    full = name
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = full
json.dump(index, open(path, "w"))
EOF
  mkdir -p "$(dirname "$out")"
  tar -C "$img" --sort=name --numeric-owner -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$work"; trap - EXIT
  log "image $IMAGE_NAME -> $out ($(du -h "$out" | cut -f1)) in $(elapsed "$t0") s"
}

cmd_unpack() {
  [[ $# -eq 2 ]] || die "usage: image.sh unpack OUT.tar DIR"
  local archive="$1" dir="$2" work
  [[ -f "$archive" ]] || die "no image archive at $archive"
  [[ ! -e "$dir" ]] || die "$dir exists; give a new directory"
  need_tools
  work="$(mktemp -d "${TMPDIR:-/tmp}/tmc-image-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  tar -C "$work" -xf "$archive"
  umoci unpack --image "$work:$TAG" "$dir" >&2
  rm -rf "$work"; trap - EXIT
  log "unpacked $archive into $dir/rootfs"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  unpack) shift; cmd_unpack "$@" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
