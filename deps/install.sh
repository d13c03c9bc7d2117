#!/usr/bin/env bash
# Installs the system packages listed in deps/packages.txt (Debian/Ubuntu). Run as root or with sudo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The list: deps/packages.txt (what the library and the bench need), or the file given (CI also
# installs deps/test-packages.txt: what only tests use).
list=${1:-$here/packages.txt}
mapfile -t packages < <(grep -v '^#' "$list" | awk 'NF {print $1}')

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all system packages present (${packages[*]})"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
  echo "deps: no apt-get here; install these yourself: ${missing[*]} (liburing-devel on Fedora/RHEL)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
