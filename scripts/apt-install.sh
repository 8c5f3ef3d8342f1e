#!/usr/bin/env bash
# Install Debian packages when we can (root or passwordless sudo); otherwise say what is missing.
set -u
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "note: cannot install Debian packages (${missing[*]}): not root. Install them yourself for audio." >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: no apt-get here; install ${missing[*]} with your package manager for audio." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || echo "note: apt-get update failed" >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "note: apt-get install ${missing[*]} failed; audio or browser tests may be unavailable." >&2
exit 0
