#!/usr/bin/env bash
# Installs a pinned Node package set (PACKAGE_DIR's package.json + package-lock.json) with
# `npm ci`, outside the source tree, and prints the directory. The directory is named after the
# lock file's hash, so a changed lock gets a fresh install and an unchanged one costs nothing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/NAME-<hash>   (or the directory in $CACHE_VARIABLE)
#
#   npm_cache.sh PACKAGE_DIR NAME CACHE_VARIABLE               install if needed, refresh the
#                                                              scripts, print the directory
#   npm_cache.sh PACKAGE_DIR NAME CACHE_VARIABLE --no-install  print the directory if it is
#                                                              installed (exit 1 if not), never
#                                                              reaching for the network
#
# The scripts in PACKAGE_DIR (*.mjs) are copied there on each call: Node resolves a script's
# imports from its own directory. No install scripts run: the packages used need none (esbuild's
# and lmdb's binaries are optional dependencies), and npm versions differ in whether they run them.
set -euo pipefail

here="$(cd "$1" && pwd)"
name="$2"
cache_variable="$3"
hash="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
dir="${!cache_variable:-${XDG_CACHE_HOME:-$HOME/.cache}/eventlog/$name-$hash}"

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

if [ "${4:-}" = "--no-install" ]; then
    installed || exit 1
else
    installed || install
fi
refresh_scripts
echo "$dir"
