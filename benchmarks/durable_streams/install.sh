#!/usr/bin/env bash
# Installs the baseline of benchmarks/durable_streams.py, the protocol's Node reference server
# (package-lock.json pins @durable-streams/server), with `npm ci` outside the source tree, and
# prints the directory:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-bench-<hash of the lock file>
#   (or $EVENTLOG_BENCH_NODE_CACHE)
#
#   install.sh               install if needed, refresh the scripts, print the directory
#   install.sh --no-install  print the directory if it is installed (exit 1 if not): what the
#                            benchmark report uses, so that it never reaches for the network
#
# The same scheme as tests/durable_streams/install.sh (named after the lock's hash; staged and
# renamed into place; no install scripts): that one installs only the files next to it, and
# the tests' packages are another pin. lmdb, the file-backed store, needs no install script
# either: its prebuilt binary is an optional dependency (@lmdb/lmdb-<platform>).
# ref_server.mjs is copied there on each call: Node resolves its imports from its directory.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
hash="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
dir="${EVENTLOG_BENCH_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-bench-$hash}"

installed() {
    [ "$(cat "$dir/.installed" 2>/dev/null)" = "$hash" ]
}

install() {
    mkdir -p "$(dirname "$dir")"
    staging="$(mktemp -d "$dir.tmp.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    cp "$here/package.json" "$here/package-lock.json" "$staging/"
    (cd "$staging" && npm ci --ignore-scripts --no-audit --no-fund --update-notifier=false --loglevel=error) >&2
    echo "$hash" >"$staging/.installed"
    installed || rm -rf "$dir"
    mv -T "$staging" "$dir" 2>/dev/null || installed # lost a race to a concurrent install
}

if [ "${1:-}" = "--no-install" ]; then
    installed || exit 1
else
    installed || install
fi
if ! cmp -s "$here/ref_server.mjs" "$dir/ref_server.mjs"; then
    cp "$here/ref_server.mjs" "$dir/ref_server.mjs.tmp.$$"
    mv -f "$dir/ref_server.mjs.tmp.$$" "$dir/ref_server.mjs"
fi
echo "$dir"
