#!/usr/bin/env bash
# Set up a checkout on a fresh Debian 12 / Raspberry Pi OS machine and run something in it.
#
#   bash systemd/bootstrap.sh demo [ARGS]   watch the kiosk work (built-in simulator, mock GPIO)
#   bash systemd/bootstrap.sh test [ARGS]   ruff, mypy, then the whole test suite (pytest ARGS)
#   bash systemd/bootstrap.sh bench [ARGS]  the whole-process benchmark (bench/process.py ARGS)
#   bash systemd/bootstrap.sh venv          only install packages and the .venv
#
# Installs the Debian packages listed in systemd/packages-*.txt when missing (with sudo when
# not root) and a virtual environment in .venv with the kiosk and its test tools. Safe to run
# again: it only does what is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
cd "$top"
what=${1:-venv}
[ $# -gt 0 ] && shift

say() { printf 'bootstrap: %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "not root and no sudo: install the packages in systemd/packages-*.txt yourself"; exit 1; }
    sudo_cmd=(sudo)
fi

install_packages() {
    local wanted=() missing=() pkg
    mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' \
        "$here/packages-runtime.txt" "$here/packages-dev.txt")
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
    local stamp=.venv/.installed
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        python3 -m venv .venv
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing the kiosk and its test tools into .venv (PyAudio and systemd-python compile)"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[test]'
        echo "$want" > "$stamp"
    fi
}

install_packages
install_venv
export PATH="$top/.venv/bin:$PATH"

case "$what" in
    venv) say "ready: .venv/bin/voice-kiosk --help" ;;
    demo) exec .venv/bin/voice-kiosk demo "$@" ;;
    test)
        .venv/bin/ruff check kiosk tests bench packaging deploy
        .venv/bin/mypy  # configured in pyproject.toml: strict on the conversation's core
        exec .venv/bin/python -m pytest "$@" ;;
    bench)  # exit code 1 when a goal is missed; bench/audio.py is a profile, run by hand
        exec .venv/bin/python bench/process.py "$@" ;;
    *) say "unknown command '$what': use demo, test, bench or venv"; exit 2 ;;
esac
