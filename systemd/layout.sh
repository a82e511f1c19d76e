#!/usr/bin/env bash
# The system files that follow from systemd/layout.env, printed for whoever installs the
# kiosk: install.sh (sourced) and the Debian package's build (packaging/debian/rules).
#
#   bash systemd/layout.sh sysusers   # sysusers.d(5): the service account and its groups
#   bash systemd/layout.sh tmpfiles   # tmpfiles.d(5): owners and modes of the configuration
#                                     # and key files, and the metrics directory's ACL
#   source systemd/layout.sh          # the KIOSK_* variables and the layout_* functions

LAYOUT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=systemd/layout.env
source "$LAYOUT_DIR/layout.env"

# sysusers.d's `u` line gives the account a group of its own name.
if [[ $KIOSK_GROUP != "$KIOSK_USER" ]]; then
    echo "layout.env: KIOSK_GROUP must equal KIOSK_USER (sysusers creates them together)" >&2
    exit 1
fi

# A comma-separated list of layout.env, one item per line.
layout_list() { tr ',' '\n' <<<"$1"; }

layout_sysusers() {
    local group
    printf '# %s service account (systemd/layout.env)\n' "$KIOSK_NAME"
    printf 'u %s - "%s daemon" %s\n' "$KIOSK_USER" "$KIOSK_NAME" "$KIOSK_HOME"
    while read -r group; do
        printf 'g %s -\n' "$group"
    done < <(layout_list "$KIOSK_GROUPS")
    while read -r group; do
        printf 'm %s %s\n' "$KIOSK_USER" "$group"
    done < <(layout_list "$KIOSK_GROUPS")
}

layout_tmpfiles() {
    local secret
    printf '# %s: owners and modes of its configuration and keys, and the metrics\n' "$KIOSK_NAME"
    printf '# directory it may write (systemd/layout.env). Applied at install and at boot.\n'
    printf 'd %s %s root %s -\n' "$KIOSK_ETC" "$KIOSK_ETC_MODE" "$KIOSK_GROUP"
    printf 'z %s %s root %s -\n' "$KIOSK_CONFIG" "$KIOSK_CONFIG_MODE" "$KIOSK_GROUP"
    while read -r secret; do
        printf 'z %s/%s %s root root -\n' "$KIOSK_ETC" "$secret" "$KIOSK_SECRET_MODE"
    done < <(layout_list "$KIOSK_SECRETS")
    # Created if missing (node_exporter may come later); an existing one keeps its owner and
    # mode. The unit's ReadWritePaths= only binds a directory that exists when it starts.
    printf 'd %s - - - -\n' "$KIOSK_TEXTFILE_DIR"
    printf 'a+ %s - - - - u:%s:rwx\n' "$KIOSK_TEXTFILE_DIR" "$KIOSK_USER"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        sysusers) layout_sysusers ;;
        tmpfiles) layout_tmpfiles ;;
        *) echo "usage: layout.sh sysusers|tmpfiles" >&2; exit 2 ;;
    esac
fi
