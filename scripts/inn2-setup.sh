#!/usr/bin/env bash
# Install, configure and start a local INN2 news server for the integration suite
# (tests/inn2/), as described in shared TESTING.md. Run as root on Debian 12.
#
#   scripts/inn2-setup.sh          install if needed, start if not running (idempotent)
#   scripts/inn2-setup.sh stop     stop innd and the two readers this script started
#   scripts/inn2-setup.sh status   exit 0 when both readers answer 200, else 1
#
# What runs afterwards (all bound to 127.0.0.1 except innd's transit port 119):
#   innd                      transit server, stores the articles
#   nnrpd on 127.0.0.1:1119   reader, no login, POST allowed (nyuu posts here)
#   nnrpd on 127.0.0.1:1120   reader that demands AUTHINFO altmount / secret
# and the newsgroup alt.binaries.test exists.
set -euo pipefail

NEWSBIN=/usr/lib/news/bin
NEWSETC=/etc/news
NEWSRUN=/run/news
ACTIVE=/var/lib/news/active
READER_PORT=1119
AUTH_PORT=1120
AUTH_USER=altmount
AUTH_PASSWORD=secret
GROUP=alt.binaries.test
# Our own files, so that a developer's other INN configuration is left alone.
AUTH_READERS_CONF=$NEWSETC/readers-altmount.conf
AUTH_PASSWD_FILE=$NEWSETC/altmount-newsusers
# Debian packages the suite needs next to INN2 (real clients of the WebDAV server).
PACKAGES=(inn2 ffmpeg curl rclone fuse3 openssl par2 jq haproxy rar 7zip genisoimage xorriso udftools nzbget)
# rar (the archive tests' tool) is in Debian's non-free component; 7zip, genisoimage, xorriso and
# udftools make the 7z and ISO/UDF test images; nzbget is the bench's real-peer downloader.
NONFREE_SOURCES=/etc/apt/sources.list.d/altmount-nonfree.sources

log() { printf 'inn2-setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True when something on 127.0.0.1:$1 answers with an NNTP 200 greeting.
nntp_ready() {
    local greeting
    greeting=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null) || return 1
    [[ $greeting == 200 ]]
}

innd_running() { "$NEWSBIN/ctlinnd" -t 5 mode >/dev/null 2>&1; }

# Waits up to $2 seconds for the check "$1" to succeed (polled, not a fixed sleep).
wait_for() {
    local check=$1 deadline=$((SECONDS + $2))
    until eval "$check"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    # A half-configured inn2 (see below) is not "install ok installed", so it lands here too.
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -f $NONFREE_SOURCES ]]; then
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' \
            'Components: non-free' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
            >"$NONFREE_SOURCES"
    fi
    apt-get update -qq
    # inn2's postinst fails on a machine without a resolvable FQDN (expected); it is
    # completed by dpkg --configure -a once inn.conf is edited.
    local apt_log
    apt_log=$(mktemp /tmp/inn2-setup-apt.XXXXXX)
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1 || true
    if [[ ! -f $NEWSETC/inn.conf ]]; then
        # inn.conf belongs to inn2-inews; restore it if it was deleted by hand.
        apt-get install -y -qq --reinstall -o Dpkg::Options::=--force-confmiss inn2-inews \
            >>"$apt_log" 2>&1 || true
    fi
    [[ -f $NEWSETC/inn.conf ]] || { cat "$apt_log" >&2; die "apt-get install inn2 did not leave $NEWSETC/inn.conf"; }
    rm -f "$apt_log"
}

configure_inn() {
    local conf=$NEWSETC/inn.conf
    sed -i -E 's/^#*\s*domain:.*/domain:                      example.net/' "$conf"
    # INN's default (1,000,000 bytes) barely fits nyuu's 700 KiB articles with yEnc overhead;
    # 10 MB lets the suite post bigger articles too.
    sed -i -E 's/^(maxartsize:\s+).*/\110000000/; s/^(localmaxartsize:\s+).*/\110000000/' "$conf"
    dpkg --configure -a >/dev/null
    dpkg-query -W -f='${Status}' inn2 | grep -q 'install ok installed' \
        || die "inn2 is still not configured (dpkg --configure -a failed)"
}

configure_auth_reader() {
    if [[ ! -f $AUTH_PASSWD_FILE ]]; then
        printf '%s:%s\n' "$AUTH_USER" "$(openssl passwd -1 "$AUTH_PASSWORD")" >"$AUTH_PASSWD_FILE"
        chown news:news "$AUTH_PASSWD_FILE"
        chmod 640 "$AUTH_PASSWD_FILE"
    fi
    cat >"$AUTH_READERS_CONF" <<EOF
# Written by altmount scripts/inn2-setup.sh: a reader that needs AUTHINFO (port $AUTH_PORT).
auth "altmount" {
    hosts: "*"
    auth: "ckpasswd -f $AUTH_PASSWD_FILE"
}
access "altmount" {
    users: "$AUTH_USER"
    newsgroups: "*"
}
EOF
}

start_innd() {
    mkdir -p "$NEWSRUN"
    chown news:news "$NEWSRUN"
    chmod 775 "$NEWSRUN"
    if innd_running; then
        return 0
    fi
    log "starting innd"
    su news -s /bin/sh -c "$NEWSBIN/rc.news" >/dev/null 2>&1 || true
    wait_for innd_running 30 || die "innd did not start (see /var/log/news/news.err)"
}

create_group() {
    grep -q "^$GROUP " "$ACTIVE" 2>/dev/null && return 0
    "$NEWSBIN/ctlinnd" -t 10 newgroup "$GROUP" y root >/dev/null
}

# Starts nnrpd as a daemon on 127.0.0.1:$1 (extra nnrpd options follow) unless one answers.
start_reader() {
    local port=$1
    shift
    nntp_ready "$port" && return 0
    log "starting nnrpd on 127.0.0.1:$port"
    "$NEWSBIN/nnrpd" -D -b 127.0.0.1 -p "$port" "$@"
    wait_for "nntp_ready $port" 15 || die "nnrpd did not answer on 127.0.0.1:$port"
}

# nnrpd -D -p PORT records its pid in $NEWSRUN/nnrpd-PORT.pid.
stop_reader() {
    local pidfile=$NEWSRUN/nnrpd-$1.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
    fi
    rm -f "$pidfile"
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "run as root (it installs packages and starts INN as user news)"
    if nntp_ready "$READER_PORT" && nntp_ready "$AUTH_PORT" && innd_running \
        && grep -q "^$GROUP " "$ACTIVE" 2>/dev/null; then
        echo "INN2 already running: reader 127.0.0.1:$READER_PORT, authenticated reader 127.0.0.1:$AUTH_PORT ($AUTH_USER/$AUTH_PASSWORD), group $GROUP"
        return 0
    fi
    install_packages
    configure_inn
    configure_auth_reader
    start_innd
    create_group
    start_reader "$READER_PORT"
    start_reader "$AUTH_PORT" -c "$AUTH_READERS_CONF"
    echo "INN2 ready: reader 127.0.0.1:$READER_PORT, authenticated reader 127.0.0.1:$AUTH_PORT ($AUTH_USER/$AUTH_PASSWORD), group $GROUP"
}

cmd_stop() {
    stop_reader "$READER_PORT"
    stop_reader "$AUTH_PORT"
    if innd_running; then
        su news -s /bin/sh -c "$NEWSBIN/rc.news stop" >/dev/null 2>&1 || true
    fi
    echo "INN2 stopped"
}

cmd_status() {
    nntp_ready "$READER_PORT" && nntp_ready "$AUTH_PORT"
}

case ${1:-start} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
