#!/usr/bin/env bash
# Install the pinned nyuu poster (tools/poster/package-lock.json) into tools/poster/node_modules
# for the INN2 integration suite. Idempotent: does nothing when the pinned version is present.
#
# nyuu needs yencode's native addon, built by yencode's install script; npm 11 runs only
# the install scripts that package.json#allowScripts lists (there: yencode@1.2.4).
set -euo pipefail

POSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools/poster" && pwd)
NYUU_BIN=$POSTER_DIR/node_modules/.bin/nyuu
ADDON=$POSTER_DIR/node_modules/yencode/build/Release/yencode.node

log() { printf 'nyuu-setup: %s\n' "$*" >&2; }

pinned_version() {
    node -p "require('$POSTER_DIR/package-lock.json').packages['node_modules/nyuu'].version"
}

installed_version() {
    node -p "require('$POSTER_DIR/node_modules/nyuu/package.json').version" 2>/dev/null
}

command -v npm >/dev/null || { log "error: npm not found (install Node.js 20 and npm)"; exit 1; }

want=$(pinned_version)
if [[ -x $NYUU_BIN && -f $ADDON && $(installed_version) == "$want" ]]; then
    echo "nyuu $want already installed: $NYUU_BIN"
    exit 0
fi

# node-gyp would download Node's headers; Debian's nodejs ships them under /usr/include/node.
if [[ -f /usr/include/node/node.h ]]; then
    export npm_config_nodedir=/usr
fi
log "installing nyuu $want (npm ci, builds yencode's native addon)"
(cd "$POSTER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
[[ -f $ADDON ]] || { log "error: yencode's native addon was not built ($ADDON)"; exit 1; }
"$NYUU_BIN" --help >/dev/null 2>&1
echo "nyuu $(installed_version) ready: $NYUU_BIN"
