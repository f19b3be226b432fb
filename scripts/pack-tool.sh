#!/usr/bin/env bash
# Packs the vfio-mig dotnet tool into OUT (default artifacts/): three packages, as .NET 10 lays out a native tool:
#   vfio-mig          the package `dotnet tool install vfio-mig` asks for: no code, it names the two below;
#   vfio-mig.<rid>    the NativeAOT binary for this machine (linux-x64, or linux-arm64 on an arm64 host: a native
#                     build is made on its own platform);
#   vfio-mig.any      the framework-dependent build, for every platform without a native package.
# `dotnet tool install` picks the native package where there is one. The NativeAOT compile takes a few minutes
# the first time (it needs clang or gcc and zlib, as scripts/vfio-mig does), seconds once scripts/vfio-mig has
# published the same sources (they share obj/).
# Usage: scripts/pack-tool.sh [OUT]; then: dotnet tool install --global vfio-mig --add-source OUT
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/artifacts}")"
case "$(uname -m)" in
  x86_64) rid=linux-x64 ;;
  aarch64) rid=linux-arm64 ;;
  *) echo "pack-tool: error: ENOTSUP: no NativeAOT build for $(uname -m)" >&2; exit 1 ;;
esac
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# The project lists linux-x64 and any; elsewhere the packages name this machine's RID instead (the quotes keep
# MSBuild from reading the ';' as the end of the property).
rids=()
[ "$rid" = linux-x64 ] || rids=("-p:ToolPackageRuntimeIdentifiers=\"$rid;any\"")
for r in "" "-r $rid" "-r any"; do
  # shellcheck disable=SC2086 # $r is empty or two words
  dotnet pack "$root/src/Vfio.Cli" -c Release $r ${rids[@]+"${rids[@]}"} -o "$out" -v quiet -nologo >&2
done
echo "pack-tool: vfio-mig, vfio-mig.$rid (NativeAOT) and vfio-mig.any in $out"
