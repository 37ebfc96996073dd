#!/usr/bin/env bash
# Install what the browser suite (tests/ui/) needs: Debian's chromium and the pinned
# playwright-core (tools/ui-test/package-lock.json) in tools/ui-test/node_modules.
# Run as root on Debian 12; idempotent, and fast when everything is present.
set -euo pipefail

UI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools/ui-test" && pwd)

log() { printf 'ui-setup: %s\n' "$*" >&2; }

if [[ ! -x /usr/bin/chromium ]]; then
    log "installing chromium (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium curl
fi

command -v npm >/dev/null || { log "error: npm not found (install Node.js 20 and npm)"; exit 1; }

pinned_version() {
    node -p "require('$UI_DIR/package-lock.json').packages['node_modules/playwright-core'].version"
}

installed_version() {
    node -p "require('$UI_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null
}

want=$(pinned_version)
if [[ $(installed_version) != "$want" ]]; then
    log "installing playwright-core $want (npm ci)"
    (cd "$UI_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $(installed_version) ready"
