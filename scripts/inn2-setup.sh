#!/usr/bin/env bash
# Install, configure and start a local INN2 news server for the integration suite
# (tests/inn2/), as described in shared TESTING.md. Run as root on Debian 12.
#
#   scripts/inn2-setup.sh          install if needed, start if not running (idempotent)
#   scripts/inn2-setup.sh stop     stop innd and the three readers this script started
#   scripts/inn2-setup.sh status   exit 0 when all readers answer 200, else 1
#
# What runs afterwards (all bound to 127.0.0.1 except innd's transit port 119):
#   innd                      transit server, stores the articles
#   nnrpd on 127.0.0.1:1119   reader, no login, POST allowed (nyuu posts here)
#   nnrpd on 127.0.0.1:1120   reader that demands AUTHINFO altmount / secret
#   nnrpd on 127.0.0.1:1563   the open reader behind TLS on connect (nnrpd -S), as providers
#                             serve NNTPS on 563; its certificate (for localhost and 127.0.0.1)
#                             is signed by a test CA whose certificate is /etc/news/altmount-tls/ca.pem
# and the newsgroup alt.binaries.test exists.
set -euo pipefail

NEWSBIN=/usr/lib/news/bin
NEWSETC=/etc/news
NEWSRUN=/run/news
ACTIVE=/var/lib/news/active
READER_PORT=1119
AUTH_PORT=1120
TLS_PORT=1563
AUTH_USER=altmount
AUTH_PASSWORD=secret
GROUP=alt.binaries.test
# Our own files, so that a developer's other INN configuration is left alone.
AUTH_READERS_CONF=$NEWSETC/readers-altmount.conf
AUTH_PASSWD_FILE=$NEWSETC/altmount-newsusers
# The TLS reader's CA, certificate and key, and the copy of inn.conf (INNCONF) that names them:
# /etc/news/inn.conf is left alone. tests/inn2 trusts $TLS_DIR/ca.pem.
TLS_DIR=$NEWSETC/altmount-tls
TLS_INNCONF=$TLS_DIR/inn.conf
# Debian packages the suite needs next to INN2 (real clients of the WebDAV server).
PACKAGES=(inn2 ffmpeg curl rclone fuse3 openssl par2 jq haproxy rar 7zip genisoimage xorriso udftools nzbget postgresql)
# rar (the archive tests' tool) is in Debian's non-free component; 7zip, genisoimage, xorriso and
# udftools make the 7z and ISO/UDF test images; nzbget is the bench's real-peer downloader.
# postgresql: the server binaries for database.type postgres (tests start their own cluster).
NONFREE_SOURCES=/etc/apt/sources.list.d/altmount-nonfree.sources

log() { printf 'inn2-setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True when something on 127.0.0.1:$1 answers with an NNTP 200 greeting.
nntp_ready() {
    local greeting
    greeting=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null) || return 1
    [[ $greeting == 200 ]]
}

# True when the TLS reader on 127.0.0.1:$TLS_PORT greets with 200 over a TLS session verified
# against the test CA for the name localhost (python3: openssl s_client waits for the server
# to hang up).
tls_ready() {
    timeout 5 python3 - "$TLS_DIR/ca.pem" "$TLS_PORT" <<'PY' >/dev/null 2>&1
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=4) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        sys.exit(0 if tls.recv(3) == b"200" else 1)
PY
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

# A test CA and a server certificate for localhost and 127.0.0.1 (10 years, so a kept machine
# does not meet an expired one); made again when missing, expiring within a day or not
# signed by the CA beside it.
make_tls_certificates() {
    local d=$TLS_DIR
    if [[ -f $d/ca.pem && -f $d/srv.pem && -f $d/srv.key ]] \
        && openssl x509 -checkend 86400 -noout -in "$d/srv.pem" >/dev/null \
        && openssl verify -CAfile "$d/ca.pem" "$d/srv.pem" >/dev/null 2>&1; then
        return 0
    fi
    log "making the TLS reader's test CA and certificate in $d"
    mkdir -p "$d"
    local work
    work=$(mktemp -d /tmp/inn2-setup-tls.XXXXXX)
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
        -days 3650 -subj "/CN=altmount test CA" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout "$work/srv.key" -out "$work/srv.csr" \
        -subj "/CN=localhost" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/ext.cnf"
    openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -out "$work/srv.pem" -days 3650 -extfile "$work/ext.cnf" >/dev/null 2>&1
    cp "$work/ca.pem" "$work/srv.pem" "$work/srv.key" "$d/"
    rm -rf "$work"
    chown -R news:news "$d"
    chmod 755 "$d"
    chmod 644 "$d/ca.pem" "$d/srv.pem"
    chmod 600 "$d/srv.key"
}

configure_tls_reader() {
    make_tls_certificates
    { grep -v '^tls' "$NEWSETC/inn.conf"
      printf 'tlscafile: %s\ntlscertfile: %s\ntlskeyfile: %s\n' \
          "$TLS_DIR/ca.pem" "$TLS_DIR/srv.pem" "$TLS_DIR/srv.key"; } >"$TLS_INNCONF"
    chmod 644 "$TLS_INNCONF"
}

start_tls_reader() {
    tls_ready && return 0
    stop_reader "$TLS_PORT"  # one left from certificates made before
    log "starting nnrpd with TLS on 127.0.0.1:$TLS_PORT"
    INNCONF=$TLS_INNCONF "$NEWSBIN/nnrpd" -D -S -b 127.0.0.1 -p "$TLS_PORT"
    wait_for tls_ready 15 || die "nnrpd -S did not answer over TLS on 127.0.0.1:$TLS_PORT"
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
    local ready="reader 127.0.0.1:$READER_PORT, authenticated reader 127.0.0.1:$AUTH_PORT"
    ready+=" ($AUTH_USER/$AUTH_PASSWORD), TLS reader 127.0.0.1:$TLS_PORT (CA $TLS_DIR/ca.pem), group $GROUP"
    if nntp_ready "$READER_PORT" && nntp_ready "$AUTH_PORT" && tls_ready && innd_running \
        && grep -q "^$GROUP " "$ACTIVE" 2>/dev/null; then
        echo "INN2 already running: $ready"
        return 0
    fi
    install_packages
    configure_inn
    configure_auth_reader
    configure_tls_reader
    start_innd
    create_group
    start_reader "$READER_PORT"
    start_reader "$AUTH_PORT" -c "$AUTH_READERS_CONF"
    start_tls_reader
    echo "INN2 ready: $ready"
}

cmd_stop() {
    stop_reader "$READER_PORT"
    stop_reader "$AUTH_PORT"
    stop_reader "$TLS_PORT"
    if innd_running; then
        su news -s /bin/sh -c "$NEWSBIN/rc.news stop" >/dev/null 2>&1 || true
    fi
    echo "INN2 stopped"
}

cmd_status() {
    nntp_ready "$READER_PORT" && nntp_ready "$AUTH_PORT" && tls_ready
}

case ${1:-start} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
