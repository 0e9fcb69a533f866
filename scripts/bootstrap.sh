#!/usr/bin/env bash
# Idempotent installer used by every make target that needs the testbed.
#   1. Debian packages (only the missing ones; apt-get runs only when something is missing)
#   2. the project's virtual environment .venv with the pins from pyproject.toml
#   3. the ns-3 wheel's helper-path fix (done by testbed.engines.ns3setup)
# Each step prints what it does and stops with the step's name when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# openssh-server: only its sshd binary is used, by the hardware-free board stand-in of the
# hardware-in-the-loop tests (testbed/hil/boardsim.py); the package's service is not needed.
# iw, hostapd, wpasupplicant: real 802.11 radios (engines: {wifi: hwsim}) on kernels with
# mac80211_hwsim.
# nodejs, npm: the live view's front-end assets come from the npm registry (npm ci below);
# Debian's npm package only where no npm exists (a nodejs from elsewhere bundles its own).
APT_PACKAGES=(openvswitch-switch mininet tcpdump tshark iperf3 iputils-ping fping ethtool
              iproute2 procps psmisc python3-venv openssh-server iw hostapd wpasupplicant
              nodejs)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
# `bootstrap.sh --vm` (make vm-setup, run by make test): Debian's stock kernel under qemu, for
# the tests and benchmarks of netem, mac80211_hwsim and the OVS kernel datapath on hosts whose
# kernel lacks them (testbed/vm).  linux-image-amd64 only provides /boot and /lib/modules
# files; the host keeps running its own kernel.
if [ "${1:-}" = "--vm" ]; then
  APT_PACKAGES+=(qemu-system-x86 linux-image-amd64 busybox-static cpio)
fi
# `bootstrap.sh --browser` (make test): headless Chromium for the live view's browser tests
# and its frame-rate bench, driven by playwright with Debian's browser.
if [ "${1:-}" = "--browser" ]; then
  APT_PACKAGES+=(chromium)
fi
# `bootstrap.sh --board` (make board-vm, make test-boards): emulated arm64 boards for the
# hardware-in-the-loop path (testbed/vm/board.py): qemu-system-aarch64 to run them, and
# mmdebstrap with qemu-user-static/binfmt to build their Debian 12 arm64 image once.
if [ "${1:-}" = "--board" ]; then
  APT_PACKAGES+=(qemu-system-arm qemu-user-static binfmt-support mmdebstrap arch-test qemu-utils
                 e2fsprogs)
fi

step() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { printf '\033[31m[setup] FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  fail "run as root: the testbed creates network namespaces and installs Debian packages"
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/tmp/sagin-apt.log 2>&1 || fail "apt-get update (log: /tmp/sagin-apt.log)"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/sagin-apt.log 2>&1 \
    || fail "apt-get install ${missing[*]} (log: /tmp/sagin-apt.log)"
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv .venv || fail "python3 -m venv .venv"
  fi
  step "installing pinned Python packages into .venv (first time only)"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' >/tmp/sagin-pip.log 2>&1 \
    || fail "pip install -e .[dev] (log: /tmp/sagin-pip.log)"
  nodeps=$(.venv/bin/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["sagin-hil"]["no-deps"]))')
  step "installing without dependencies: $nodeps"
  # shellcheck disable=SC2086
  .venv/bin/pip install -q --disable-pip-version-check --no-deps $nodeps >>/tmp/sagin-pip.log 2>&1 \
    || fail "pip install --no-deps $nodeps (log: /tmp/sagin-pip.log)"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

.venv/bin/python -m testbed.engines.ns3setup || fail "ns-3 helper-path fix"

# the live view's front-end (leaflet, uplot, world-atlas, topojson-client), pinned by
# package-lock.json and served by the testbed itself: no CDN, no tile server
web=testbed/view/web
wstamp="$web/node_modules/.installed-$(sha256sum "$web/package-lock.json" | cut -c1-16)"
if [ ! -f "$wstamp" ]; then
  step "installing the live view's web assets (npm ci in $web)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error) >/tmp/sagin-npm.log 2>&1 \
    || fail "npm ci in $web (log: /tmp/sagin-npm.log)"
  rm -f "$web"/node_modules/.installed-*
  touch "$wstamp"
fi

if [ "${1:-}" = "--board" ]; then
  # foreign binaries (arm64) run through qemu-user: binfmt_misc must be mounted and enabled
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || fail "mount binfmt_misc (arm64 binaries cannot run while building the board image)"
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    step "enabling qemu-aarch64 in binfmt_misc"
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || fail "update-binfmts --enable qemu-aarch64"
  fi
fi
