#!/bin/sh
# Writes the man pages ipamctl(1), grpc_health_probe(1) and meridio-ipam(8)
# into OUT_DIR from the built programs in BIN_DIR: help2man turns each
# program's --help into its page, so --help is the one source of both.
# ipamctl's page also gets every command's `ipamctl <command> --help`.
# The date is SOURCE_DATE_EPOCH's when set (reproducible builds), in ISO
# form (mandoc and groff both read it).
#
#   scripts/manpages.sh BIN_DIR OUT_DIR
set -eu

[ $# -eq 2 ] || { echo "usage: scripts/manpages.sh BIN_DIR OUT_DIR" >&2; exit 2; }
bin=$1
out=$2
mkdir -p "$out"
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%d)
version=$("$bin/meridio-ipam" --version | sed 's/^meridio-ipam //')

# roff-safe copy of plain text: backslashes, and a leading . or ' that
# would read as a request.
roff_text() {
	sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

# gen NAME SECTION DESCRIPTION INCLUDE [help2man options]
gen() {
	name=$1 sec=$2 desc=$3 inc=$4
	shift 4
	help2man --no-info --no-discard-stderr --section="$sec" \
	    --name="$desc" --include="$inc" "$@" \
	    --output="$out/$name.$sec.tmp" "$bin/$name"
	sed "s/^\\(\\.TH [^ ]* \"$sec\"\\) \"[^\"]*\"/\\1 \"$date\"/" \
	    "$out/$name.$sec.tmp" > "$out/$name.$sec"
	rm -f "$out/$name.$sec.tmp" "$inc"
}

see_also() {
	printf '[SEE ALSO]\n'
	printf '%s\n' "$@" | sed 's/^\(.*\)(\(.\))$/.BR \1 (\2),/' | sed '$ s/,$//'
	printf '.PP\nREADME.md of meridio-ipam.\n'
}

inc=$out/ipamctl.h2m
{
	printf '[COMMANDS]\n'
	"$bin/ipamctl" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p' |
	while read -r cmd; do
		printf '.SS "ipamctl %s"\n.nf\n' "$cmd"
		"$bin/ipamctl" "$cmd" --help | roff_text
		printf '.fi\n'
	done
	see_also "meridio-ipam(8)" "grpc_health_probe(1)"
} > "$inc"
gen ipamctl 1 "inspect and operate a running meridio-ipam" "$inc"

inc=$out/grpc_health_probe.h2m
see_also "meridio-ipam(8)" "ipamctl(1)" > "$inc"
gen grpc_health_probe 1 "ask a gRPC server's health service whether it serves" \
    "$inc" --help-option=-h --version-string="$version"

inc=$out/meridio-ipam.h2m
see_also "ipamctl(1)" "grpc_health_probe(1)" > "$inc"
gen meridio-ipam 8 "Meridio's IPAM service: hands out conduit, node and child prefixes of a trench" "$inc"
