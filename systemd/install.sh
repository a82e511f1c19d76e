#!/usr/bin/env bash
# Install (or remove) voice-kiosk as a systemd service. Safe to run again: a second run
# leaves the same files, and never overwrites /etc/voice-kiosk/config.yaml or key files.
#
#   sudo systemd/install.sh                 # packages, user, venv, config, unit; start
#   sudo systemd/install.sh --uninstall     # remove it all, keep config, keys and the user
#   systemd/install.sh --root /tmp/img      # stage into a directory (image building, tests)
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [options]
  --uninstall        remove the service, unit and venv; keep /etc/voice-kiosk and the user
  --root DIR         install into DIR instead of / (host users, packages, systemd untouched)
  --source DIR       voice-kiosk checkout to install (default: the one holding this script)
  --no-packages      do not apt-get install systemd/packages-runtime.txt
  --packages         install packages even with --root (into the host!)
  --no-venv          do not create the virtualenv (tests)
  --venv-from VENV   create the virtualenv offline, reusing VENV's installed dependencies
  --python PYTHON    interpreter for the virtualenv (default: python3)
  -h, --help         this text
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$SCRIPT_DIR/.." && pwd)
ROOT=""
UNINSTALL=0
PACKAGES=auto
VENV=1
VENV_FROM=""
PYTHON=python3

while (($#)); do
    case "$1" in
        --uninstall) UNINSTALL=1 ;;
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --source) SOURCE=${2:?--source needs a directory}; shift ;;
        --no-packages) PACKAGES=no ;;
        --packages) PACKAGES=yes ;;
        --no-venv) VENV=0 ;;
        --venv-from) VENV_FROM=${2:?--venv-from needs a virtualenv}; shift ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ -n $ROOT ]]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT == / ]] && ROOT=""
fi
SOURCE=$(cd "$SOURCE" && pwd)
if [[ -z $ROOT && $EUID -ne 0 ]]; then
    echo "install.sh: run as root (sudo), or stage into a directory with --root DIR" >&2
    exit 1
fi

# Paths, the account and modes: systemd/layout.env, shared with the Debian package.
# shellcheck source=systemd/layout.sh
source "$SCRIPT_DIR/layout.sh"
NAME=$KIOSK_NAME
VENV_PATH=$KIOSK_VENV                         # path as seen by the running system
VENV_DIR=$ROOT$VENV_PATH                      # path as written by this script
PREFIX_DIR=$ROOT$KIOSK_PREFIX
ETC=$KIOSK_ETC
ETC_DIR=$ROOT$ETC
CONFIG=$KIOSK_CONFIG
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=$UNIT_DIR/$NAME.service
WANTS_LINK=$UNIT_DIR/multi-user.target.wants/$NAME.service
DROPIN=$ROOT$KIOSK_CREDENTIALS_DROPIN
# A local administrator's declarations go in /etc (a package's in /usr/lib).
SYSUSERS=$ROOT/etc/sysusers.d/$NAME.conf
# The command IT staff type (check-config, devices, test-audio) is on everyone's PATH; in
# /usr/local/bin because this is a local install (the Debian package links /usr/bin's).
BIN_LINK=$ROOT/usr/local/bin/$NAME
# node_exporter's textfile directory (Debian's path). It is prepared even before node_exporter
# is installed: the unit's ReadWritePaths= only binds directories that exist when the service
# starts, so one created later would need a restart.
TEXTFILE_DIR=$KIOSK_TEXTFILE_DIR
# Key files the service may use; each present one gets a LoadCredential= line.
mapfile -t SECRETS < <(layout_list "$KIOSK_SECRETS")

say() { printf 'install.sh: %s\n' "$*"; }

# systemd manages this machine (sd_booted(3)); never true with --root.
systemd_running() { [[ -z $ROOT && -d /run/systemd/system ]]; }

# chown, except when staging into --root as an ordinary user (then modes only).
own() {
    if ((EUID == 0)); then
        chown "$@"
    elif [[ -z ${OWN_NOTED:-} ]]; then
        OWN_NOTED=1
        say "note: not root, so file owners are left as they are (modes are set)"
    fi
}

# Numeric id of a group in the target tree's /etc/group (empty if absent).
group_id() { awk -F: -v g="$1" '$1 == g { print $3 }' "$ROOT/etc/group" 2>/dev/null || true; }

install_packages() {
    if [[ $PACKAGES == no || ($PACKAGES == auto && -n $ROOT) ]]; then
        say "skipping system packages (--no-packages or --root)"
        return
    fi
    local -a pkgs missing=()
    local pkg
    mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' \
        "$SOURCE/systemd/packages-runtime.txt")
    for pkg in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "system packages already installed"
        return
    fi
    say "installing packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    # A sysusers.d entry is the systemd way to declare a system user; systemd-sysusers
    # applies it to the tree it is pointed at (the host, or --root's own /etc/passwd).
    mkdir -p "$(dirname "$SYSUSERS")"
    layout_sysusers >"$SYSUSERS.tmp"
    chmod 0644 "$SYSUSERS.tmp"
    mv -f "$SYSUSERS.tmp" "$SYSUSERS"
    if command -v systemd-sysusers >/dev/null; then
        # systemd-sysusers writes shadow files with mode 0000, which only root can read back:
        # an ordinary user staging an image opens them for the run and closes them again.
        local shadow=()
        if ((EUID != 0)); then
            for f in "$ROOT/etc/shadow" "$ROOT/etc/gshadow"; do
                [[ -e $f ]] && chmod u+rw "$f" && shadow+=("$f")
            done
        fi
        systemd-sysusers ${ROOT:+--root="$ROOT"} "$SYSUSERS"
        if ((EUID != 0)); then
            for f in "$ROOT/etc/shadow" "$ROOT/etc/gshadow"; do
                [[ -e $f ]] && chmod 0000 "$f"
            done
        fi
    elif [[ -z $ROOT ]]; then
        local group
        while read -r group; do
            getent group "$group" >/dev/null || groupadd --system "$group"
        done < <(layout_list "$KIOSK_GROUPS")
        getent passwd "$KIOSK_USER" >/dev/null || useradd --system --user-group \
            --home-dir "$KIOSK_HOME" --no-create-home --shell /usr/sbin/nologin "$KIOSK_USER"
        usermod -a -G "$KIOSK_GROUPS" "$KIOSK_USER"
    else
        say "note: no systemd-sysusers; user $KIOSK_USER will be created on first boot from $SYSUSERS"
    fi
}

install_venv() {
    if ((VENV == 0)); then
        say "skipping the virtualenv (--no-venv)"
        return
    fi
    if [[ -n $VENV_FROM ]]; then
        # The new venv sees VENV_FROM's packages (and its pip) through a .pth file, so only the
        # kiosk itself is built (pip still fetches its build backend, setuptools, if not cached).
        local site
        site=$("$VENV_FROM/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        [[ -x $VENV_DIR/bin/python ]] || "$PYTHON" -m venv --without-pip "$VENV_DIR"
        local own
        own=$("$VENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        printf '%s\n' "$site" >"$own/voice_kiosk_deps.pth"
        "$VENV_DIR/bin/python" -m pip install --quiet --no-deps --no-compile \
            --disable-pip-version-check "$SOURCE"
    else
        [[ -x $VENV_DIR/bin/python ]] || "$PYTHON" -m venv "$VENV_DIR"
        "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$SOURCE"
    fi
    # The unit runs Python with PYTHONOPTIMIZE=2 and the venv is read-only to the service:
    # without these .opt-2.pyc files every start would compile the kiosk and its libraries in
    # memory. (Paths inside them name the installed system, also under --root.)
    "$VENV_DIR/bin/python" -OO -m compileall -q -j 0 ${ROOT:+-s "$ROOT" -p /} "$VENV_DIR/lib" \
        >/dev/null
    if [[ -n $ROOT ]]; then
        # Scripts name their interpreter by absolute path: make it the installed system's.
        grep -rlF --null "$VENV_DIR" "$VENV_DIR/bin" | xargs -0r sed -i "s|$VENV_DIR|$VENV_PATH|g"
    fi
    say "installed $("$VENV_DIR/bin/python" -c 'import kiosk; print("voice-kiosk", kiosk.__version__)') into $VENV_PATH"
}

install_command() {
    mkdir -p "$(dirname "$BIN_LINK")"
    ln -sfn "$VENV_PATH/bin/$NAME" "$BIN_LINK"
    say "command: $NAME (/usr/local/bin/$NAME -> $VENV_PATH/bin/$NAME)"
}

user_id() { awk -F: -v u="$1" '$1 == u { print $3 }' "$ROOT/etc/passwd" 2>/dev/null || true; }

prepare_metrics_dir() {
    local dir=$ROOT$TEXTFILE_DIR uid
    mkdir -p "$dir"
    uid=$(user_id "$KIOSK_USER")
    if [[ -z $uid ]]; then
        say "metrics: user $KIOSK_USER not in $ROOT/etc/passwd yet; run install.sh again after first boot"
    elif ! command -v setfacl >/dev/null; then
        say "metrics: setfacl missing (package acl); the service cannot write $TEXTFILE_DIR"
    elif setfacl -m "u:$uid:rwx" "$dir" 2>/dev/null; then
        say "metrics: $KIOSK_USER may write $TEXTFILE_DIR (set metrics.textfile to use it)"
    else
        say "metrics: could not grant $KIOSK_USER write access to $TEXTFILE_DIR (no ACL support?)"
    fi
}

install_config() {
    local gid
    gid=$(group_id "$KIOSK_GROUP")
    mkdir -p "$ETC_DIR"
    chmod "$KIOSK_ETC_MODE" "$ETC_DIR"
    if [[ -n $gid ]]; then own "0:$gid" "$ETC_DIR"; fi
    if [[ -e $ROOT$CONFIG ]]; then
        say "keeping existing $CONFIG"
    elif [[ -f $SOURCE/config/voice-kiosk.yaml ]]; then
        install -m "$KIOSK_CONFIG_MODE" "$SOURCE/config/voice-kiosk.yaml" "$ROOT$CONFIG"
        say "installed example config $CONFIG: edit kiosk.id and gateway"
    else
        say "warning: no config/voice-kiosk.yaml in $SOURCE; write $CONFIG"
    fi
    if [[ -f $ROOT$CONFIG ]]; then
        chmod "$KIOSK_CONFIG_MODE" "$ROOT$CONFIG"
        if [[ -n $gid ]]; then own "0:$gid" "$ROOT$CONFIG"; fi
    fi
}

install_secrets() {
    # Keys stay root-only; systemd hands the service a copy (LoadCredential=).
    local name lines=""
    for name in "${SECRETS[@]}"; do
        [[ -f $ETC_DIR/$name ]] || continue
        own 0:0 "$ETC_DIR/$name"
        chmod "$KIOSK_SECRET_MODE" "$ETC_DIR/$name"
        lines+="LoadCredential=$name:$ETC/$name"$'\n'
    done
    if [[ -n $lines ]]; then
        mkdir -p "$(dirname "$DROPIN")"
        printf '# Written by install.sh for the key files present in %s.\n[Service]\n%s' \
            "$ETC" "$lines" >"$DROPIN.tmp"
        chmod 0644 "$DROPIN.tmp"
        mv -f "$DROPIN.tmp" "$DROPIN"
        say "credentials: $(grep -c '^LoadCredential=' "$DROPIN") key file(s) passed via LoadCredential="
    else
        rm -f "$DROPIN"
        rmdir "$(dirname "$DROPIN")" 2>/dev/null || true
        say "no key file yet. For a gateway API key, as root:"
        say "  install -m $KIOSK_SECRET_MODE /dev/null $ETC/gateway-api-key"
        say "  printf '%s' 'va_k_...' > $ETC/gateway-api-key   # then run install.sh again"
        say "  and in config.yaml: api_key_file: \${CREDENTIALS_DIRECTORY}/gateway-api-key"
    fi
}

install_unit() {
    mkdir -p "$UNIT_DIR" "$(dirname "$WANTS_LINK")"
    install -m 0644 "$SOURCE/systemd/$NAME.service" "$UNIT"
    if systemd_running; then
        systemctl daemon-reload
        systemctl enable "$NAME.service"
        systemctl restart "$NAME.service"
        say "started: systemctl status $NAME"
    else
        ln -sfn "/etc/systemd/system/$NAME.service" "$WANTS_LINK"
        say "enabled (multi-user.target.wants); systemd is not running here, so not started"
    fi
}

uninstall() {
    if systemd_running; then
        systemctl disable --now "$NAME.service" 2>/dev/null || true
    fi
    rm -f "$UNIT" "$WANTS_LINK" "$DROPIN" "$SYSUSERS"
    [[ -L $BIN_LINK ]] && rm -f "$BIN_LINK"
    rmdir "$(dirname "$DROPIN")" "$(dirname "$WANTS_LINK")" 2>/dev/null || true
    rm -rf "$PREFIX_DIR"
    if systemd_running; then
        systemctl daemon-reload
    fi
    say "removed service, unit and $KIOSK_PREFIX"
    say "kept $ETC (config and keys), $KIOSK_HOME and user $KIOSK_USER"
    say "(delete them by hand if the kiosk is retired: userdel $KIOSK_USER; rm -r $ETC $KIOSK_HOME)"
}

if ((UNINSTALL)); then
    uninstall
    exit 0
fi
install_packages
create_user
install_venv
install_command
prepare_metrics_dir
install_config
install_secrets
install_unit
say "done"
