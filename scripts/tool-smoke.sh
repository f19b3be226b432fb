#!/usr/bin/env bash
# The dotnet tool as a user installs it: packs it (scripts/pack-tool.sh) into a fresh temporary directory, installs
# it with `dotnet tool install --tool-path` from that directory alone (its own nuget.config: no other package source,
# no global tool, nothing in ~/.nuget), and checks that the installed vfio-mig command is the NativeAOT binary that
# was packed: an ELF executable with NativeAOT's managed-code section, no vfio-mig.dll beside it (a dotnet apphost
# or `dotnet vfio-mig.dll` tool would have one), byte for byte the file in vfio-mig.<rid>, and that it runs
# (--version, path RUNNING STOP_COPY). Then the framework-dependent fallback package vfio-mig.any runs under dotnet.
# Cost: about 30-60 s after scripts/vfio-mig published the same sources (scripts/aot-smoke.sh runs this after it);
# a NativeAOT compile of a few minutes otherwise. Prints "N passed, M failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "tool-smoke: no NativeAOT build for $(uname -m)"; echo "0 passed, 1 failed"; exit 1 ;; esac
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-mig-tool.XXXXXXXX")"
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
check() { # check NAME COMMAND...: one line per check
  if "${@:2}"; then echo "tool-smoke: ok: $1"; passed=$((passed + 1)); else echo "tool-smoke: FAILED: $1"; failed=$((failed + 1)); fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

command -v unzip >/dev/null 2>&1 || { echo "tool-smoke: unzip is missing (scripts/test.sh installs it as root)"; check "unzip present" false; finish; }
t0=$(date +%s)
if ! bash "$root/scripts/pack-tool.sh" "$work/packages"; then check "scripts/pack-tool.sh packs the tool" false; finish; fi
cat >"$work/nuget.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration><packageSources><clear /><add key="packed" value="$work/packages" /></packageSources></configuration>
EOF
pointer="$(ls "$work"/packages/vfio-mig.[0-9]*.nupkg 2>/dev/null | head -1)"
version="${pointer##*/vfio-mig.}"; version="${version%.nupkg}"
check "the pointer package vfio-mig.$version.nupkg names vfio-mig.$rid and vfio-mig.any" \
  bash -c 'x="$(unzip -p "$1" tools/any/any/DotnetToolSettings.xml)" && grep -q "Id=\"vfio-mig.$2\"" <<<"$x" && grep -q "Id=\"vfio-mig.any\"" <<<"$x"' _ "$pointer" "$rid"

# From the temporary directory, so no nuget.config of the repository adds a source.
(cd "$work" && dotnet tool install --tool-path "$work/tools" vfio-mig --version "$version" --configfile "$work/nuget.config") \
  || { check "dotnet tool install --tool-path" false; finish; }
cmd="$work/tools/vfio-mig"
image="$(readlink -f "$cmd")"
is_native() { # ELF magic, NativeAOT's __managedcode section, no managed entry assembly beside it
  [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] && LC_ALL=C grep -q -a -F __managedcode "$1" &&
    [ ! -e "$(dirname "$1")/vfio-mig.dll" ] && [ ! -e "$(dirname "$1")/vfio-mig.runtimeconfig.json" ]
}
check "the installed vfio-mig is a NativeAOT ELF image with no vfio-mig.dll beside it ($image)" is_native "$image"
check "the installed vfio-mig is the binary of vfio-mig.$rid.$version.nupkg" \
  bash -c 'cmp -s "$1" <(unzip -p "$2" "tools/any/$3/vfio-mig")' _ "$image" "$work/packages/vfio-mig.$rid.$version.nupkg" "$rid"
check "vfio-mig --version prints $version" bash -c '"$1" --version | grep -q "^$2\(+\|$\)"' _ "$cmd" "$version"
check "vfio-mig path RUNNING STOP_COPY prints the kernel's path" \
  bash -c '[ "$("$1" path RUNNING STOP_COPY)" = "RUNNING > RUNNING_P2P > STOP > STOP_COPY" ]' _ "$cmd"

# The fallback for platforms without a native package: the same CLI under the JIT.
mkdir -p "$work/any" && unzip -q "$work/packages/vfio-mig.any.$version.nupkg" -d "$work/any"
check "vfio-mig.any runs under dotnet (path RUNNING STOP_COPY)" \
  bash -c '[ "$(dotnet "$1" path RUNNING STOP_COPY)" = "RUNNING > RUNNING_P2P > STOP > STOP_COPY" ]' _ "$work/any/tools/net10.0/any/vfio-mig.dll"
echo "tool-smoke: $(($(date +%s) - t0)) s"
finish
