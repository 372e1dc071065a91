#!/usr/bin/env bash
# Install what the project needs on Debian 12, idempotently:
#   - Debian packages (only the missing ones; apt-get update once, only if needed)
#   - .venv        : Debian's python3 + system site packages (Mininet's module) + ryu runtime + tests
#   - .venv-osken  : the same project on os-ken 4.2.2 (OpenStack's maintained fork)
# Re-runs are quick: a venv is rebuilt only when setup.cfg or requirements/ change.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

APT_PACKAGES=(python3 python3-venv python3-dev gcc tzdata openssl openvswitch-switch mininet sip-tester tshark
              iputils-ping iproute2 ethtool tcpdump procps psmisc
              kamailio kamailio-utils-modules kamailio-extra-modules  # http_client, jansson: docs/kamailio.md
              etcd-server etcd-client                                 # the shared ledger: docs/cluster.md
              chromium chromium-driver)                               # the console's browser test: docs/operations.md

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"; exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp_of() { cat setup.cfg requirements/*.txt scripts/bootstrap.sh | sha256sum | cut -c1-16; }
want=$(stamp_of)

# pip reads this machine's own pip configuration; a build constraint is ours alone.
make_venv() {  # make_venv DIR EXTRAS [--system-site-packages]
  local dir=$1 extras=$2 flags=${3:-}
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    return 0
  fi
  say "building $dir ($extras)"
  rm -rf "$dir"
  /usr/bin/python3 -m venv $flags "$dir"
  local pip=("$dir/bin/python" -m pip install -q --disable-pip-version-check)
  # ryu 4.34 builds only with setuptools < 68 (see docs/deployment.md): install that
  # first and build without isolation so the constraint holds inside the build.
  timeout 900 "${pip[@]}" -c requirements/build-constraints.txt 'setuptools<68' wheel pbr
  timeout 1800 "${pip[@]}" --no-build-isolation -c requirements/build-constraints.txt -e ".[$extras]"
  # ryu-manager imports eventlet.wsgi.ALREADY_HANDLED before any app; restore it at start-up.
  local site
  site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import ryu_apps._eventlet_compat" > "$site/mam-eventlet-compat.pth"
  echo "$want" > "$dir/.stamp"
}

make_venv .venv "ryu,test,demo" --system-site-packages
make_venv .venv-osken "osken,test"
say "ready: $root/.venv (ryu $("$root/.venv/bin/python" -c 'import ryu; print(ryu.__version__ if hasattr(ryu, "__version__") else "4.34")' 2>/dev/null)), $root/.venv-osken (os-ken)"
