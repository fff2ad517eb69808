#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module for FUZZTIME each (default 30s), one after
# another, and exits non-zero if any finds a crasher (go test writes it under the package's
# testdata/fuzz/<Target>/, where plain `go test` replays it from then on: commit it with the fix).
#
#   scripts/fuzz.sh                       every target in ./...
#   FUZZTIME=10m scripts/fuzz.sh ./gateway  the targets of some packages only
#
# FUZZPARALLEL (default: go test's, GOMAXPROCS) is the number of fuzz workers; 1 leaves the
# other cores to other work.
#
# FUZZMINIMIZETIME (default 5s) bounds the minimisation of each new input, which otherwise
# stalls a short run on a busy machine. FUZZTIMEOUT (default 2h) is go test's -timeout and must
# exceed FUZZTIME.
#
# Go 1.26's fuzz coordinator can end a clean run with "context deadline exceeded" and no crasher
# (golang/go#75804, fixed in Go 1.27). A target failing that way, with no new file under its
# testdata/fuzz/, is reported as a flake and does not fail the run; any other failure does.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
FUZZTIMEOUT=${FUZZTIMEOUT:-2h}
FUZZPARALLEL=${FUZZPARALLEL:-}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

# go test -list prints each matching test name, then "ok <import path> <time>" per package.
listed=$($GO test -run '^$' -list '^Fuzz' "${pkgs[@]}") || {
	echo "fuzz.sh: listing the fuzz targets failed" >&2
	printf '%s\n' "$listed" >&2
	exit 1
}
mapfile -t listing <<<"$listed"
targets=()
names=()
for line in "${listing[@]}"; do
	case $line in
	Fuzz*) names+=("$line") ;;
	"ok "*)
		pkg=$(awk '{print $2}' <<<"$line")
		for n in "${names[@]}"; do targets+=("$pkg $n"); done
		names=()
		;;
	esac
done
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets in ${pkgs[*]}" >&2
	exit 1
fi

echo "fuzz.sh: ${#targets[@]} targets, $FUZZTIME each"
# files counts the crashers already written for a target.
files() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }

failed=()
flaky=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	corpus="$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name"
	before=$(files "$corpus")
	echo "=== $name ($pkg)"
	rc=0
	$GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" \
		-timeout "$FUZZTIMEOUT" ${FUZZPARALLEL:+-parallel "$FUZZPARALLEL"} "$pkg" 2>&1 | tee "$out" || rc=$?
	[ "$rc" -eq 0 ] && continue
	after=$(files "$corpus")
	if [ "$after" -eq "$before" ] && grep -qx '    context deadline exceeded' "$out" && ! grep -q 'Failing input' "$out"; then
		echo "fuzz.sh: $name: coordinator deadline flake (golang/go#75804), no crasher" >&2
		flaky+=("$name ($pkg)")
		continue
	fi
	failed+=("$name ($pkg)")
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: ${#failed[@]} target(s) failed; crashers are under each package's testdata/fuzz/:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran $FUZZTIME without a crasher (${#flaky[@]} deadline flakes)"
