#!/usr/bin/env bash
# Installs the host packages sandburg needs on Debian 12, idempotently.
# runsc comes from Debian 13 (trixie): bookworm's build breaks statx (`ls -l` fails inside sandboxes),
# so a trixie source is added and pinned so that only runsc is ever taken from it.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in runc btrfs-progs mmdebstrap busybox-static tini python3 python3-venv iproute2 nftables conntrack \
         util-linux e2fsprogs ca-certificates git make tmux curl skopeo docker-registry; do
  have "$p" || need+=("$p")
done

trixie_list=/etc/apt/sources.list.d/sandburg-trixie.sources
trixie_pin=/etc/apt/preferences.d/sandburg-trixie
if [ ! -f "$trixie_list" ]; then
  cat > "$trixie_list" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
if [ ! -f "$trixie_pin" ]; then
  cat > "$trixie_pin" <<'PIN'
# sandburg: take only runsc (gVisor) from trixie
Package: *
Pin: release n=trixie
Pin-Priority: -10

Package: runsc
Pin: release n=trixie
Pin-Priority: 990
PIN
fi

# Node.js and npm run the Daytona TypeScript SDK's tests (make test); Debian's are enough where none is installed.
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)

runsc_ok=0
if have runsc; then
  v=$(dpkg-query -W -f='${Version}' runsc)
  dpkg --compare-versions "$v" ge "0.0~20240729" && runsc_ok=1
fi
[ "$runsc_ok" = 1 ] || need+=("runsc")

if [ "${#need[@]}" -gt 0 ]; then
  echo "setup-host: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o Acquire::Retries=3
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# docker-registry is only the tests' local registry (tests/_support/registry.py starts its own on a free port):
# its packaged service would hold port 5000 on every host.
systemctl disable --now docker-registry 2>/dev/null || true
modprobe btrfs 2>/dev/null || true
echo "setup-host: ok (runc $(runc --version | head -1 | awk '{print $3}'), runsc $(dpkg-query -W -f='${Version}' runsc))"
