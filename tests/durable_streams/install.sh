#!/usr/bin/env bash
# Installs the Node side of the Durable Streams tests (package-lock.json: the protocol's
# conformance suite and its TypeScript client) with `npm ci`, outside the source tree, and
# prints the directory. The directory is named after the lock file's hash, so a changed lock
# gets a fresh install and an unchanged one costs nothing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-<hash>   (or $EVENTLOG_NODE_CACHE)
#
#   install.sh               install if needed, refresh the scripts, print the directory
#   install.sh --no-install  print the directory if it is installed (exit 1 if not): what the
#                            tests use to find it without touching the network
#
# package.json pins vitest and vite besides the two packages: the suite asks for vitest ^4, and
# from vitest 4.1 on that brings vite 7+, which needs Node 20.19+; Debian 12's nodejs (what .ci/run
# installs) is Node 18. vitest 4.0.18 with vite 6.4.6 runs the suite on Node 18 and newer alike.
#
# The scripts next to this file (conformance.test.mjs, read_stream.mjs) are copied there on
# each call: Node resolves `@durable-streams/...` imports from a script's own directory.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
hash="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
dir="${EVENTLOG_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/durable-streams-$hash}"

installed() {
    [ "$(cat "$dir/.installed" 2>/dev/null)" = "$hash" ]
}

# Installs into a staging directory beside $dir and renames it into place, so that an
# interrupted or concurrent install never leaves a half-filled $dir behind.
install() {
    mkdir -p "$(dirname "$dir")"
    staging="$(mktemp -d "$dir.tmp.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    cp "$here/package.json" "$here/package-lock.json" "$staging/"
    # No install scripts: the packages need none (esbuild's binary is an optional dependency),
    # and npm versions differ in whether they run them.
    (cd "$staging" && npm ci --ignore-scripts --no-audit --no-fund --update-notifier=false --loglevel=error) >&2
    echo "$hash" >"$staging/.installed"
    installed || rm -rf "$dir"
    mv -T "$staging" "$dir" 2>/dev/null || installed # lost a race to a concurrent install
}

# Copies each script that differs, by rename, so a running test never reads half a file.
refresh_scripts() {
    local script
    for script in "$here"/*.mjs; do
        local target="$dir/$(basename "$script")"
        if ! cmp -s "$script" "$target"; then
            cp "$script" "$target.tmp.$$"
            mv -f "$target.tmp.$$" "$target"
        fi
    done
}

if [ "${1:-}" = "--no-install" ]; then
    installed || exit 1
else
    installed || install
fi
refresh_scripts
echo "$dir"
