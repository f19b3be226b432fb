#!/usr/bin/env bash
# Builds the benches' raw-copy reference, artifacts/rawcopy/vfio-mig-rawcopy (tools/rawcopy), with cc when it is
# missing or older than its source. Without a C compiler it says so and exits 0: `vfio-mig bench` then falls back
# to blocking copies on .NET threads and prints that it did.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/tools/rawcopy/vfio-mig-rawcopy.c"
out="$root/artifacts/rawcopy/vfio-mig-rawcopy"
[ -x "$out" ] && [ "$out" -nt "$src" ] && exit 0
if ! command -v cc >/dev/null 2>&1; then
  echo "build-rawcopy: no C compiler (cc); vfio-mig bench will use its .NET fallback for the raw reference" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
cc -O2 -Wall -Wextra -Werror -pthread -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
