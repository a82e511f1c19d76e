#!/usr/bin/env bash
# Build the voice-kiosk Debian package for this machine's architecture, with its software
# bill of materials, and check it with lintian. Run on Debian 12 / Raspberry Pi OS Bookworm
# (amd64, or arm64 for a Pi), from a checkout, as root or with sudo for the build packages:
#
#   bash packaging/build-deb.sh                     # -> dist/voice-kiosk_<version>_<arch>.deb
#   bash packaging/build-deb.sh --out DIR --version 0.1.0+ward3
#
# Writes into the output directory:
#   voice-kiosk_<version>_<arch>.deb           the package
#   voice-kiosk_<version>_<arch>.cdx.json      CycloneDX SBOM of its virtual environment
#                                              (also in the package: /usr/share/doc/voice-kiosk)
#   voice-kiosk_<version>_<arch>.lintian.txt   lintian's report (the build fails on an error)
#   voice-kiosk_<version>_<arch>.buildinfo, .changes
#
# The source is staged in a temporary directory (what git tracks, plus new files it does not
# ignore), with packaging/debian as its debian/ and a changelog for the version: the checkout
# is never written to. Build dependencies missing from the machine are installed with apt
# (debian/control's Build-Depends); the virtual environment's packages come from PyPI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
out=$top/dist
version=""
run_lintian=1
CYCLONEDX_BOM=cyclonedx-bom==7.5.0

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<'EOF'
options:
  --out DIR          where the results go (default: dist/ in the checkout)
  --version VERSION  the package's version (default: kiosk.__version__); a higher one makes
                     an upgrade of the same source, e.g. 0.1.0+1
  --no-lintian       skip lintian
  -h, --help         this text
EOF
}

while (($#)); do
    case "$1" in
        --out) out=${2:?--out needs a directory}; shift ;;
        --version) version=${2:?--version needs a version}; shift ;;
        --no-lintian) run_lintian=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-deb.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'build-deb: %s\n' "$*" >&2; }
started=$SECONDS

upstream=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$top/kiosk/__init__.py")
version=${version:-$upstream}
# A native package: Debian's version syntax without a revision.
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
    say "not a version for a native package: $version (digits first, then A-Z a-z 0-9 . + ~)"
    exit 2
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { say "not root and no sudo: install debian/control's Build-Depends yourself"; exit 1; }
    sudo_cmd=(sudo)
fi
apt_get() {
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/voice-kiosk-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/voice-kiosk-$version

# -- the source, as a clean checkout has it ----------------------------------------------------
mkdir -p "$stage"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Regular files only (a tracked file deleted in the work tree is left out).
    # shellcheck disable=SC2016  # the inner shell expands $f
    git -C "$top" ls-files -z -co --exclude-standard \
        | (cd "$top" && xargs -0 -r sh -c \
            'for f; do if [ -f "$f" ] && [ ! -L "$f" ]; then printf "%s\0" "$f"; fi; done' sh) \
        | tar -C "$top" --null -T - -cf - | tar -C "$stage" -xf -
    epoch=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
else
    tar -C "$top" --exclude=.git --exclude=.venv --exclude=dist --exclude=build \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$stage" -xf -
    epoch=$(date +%s)
fi
rm -rf "$stage/debian"
cp -r "$top/packaging/debian" "$stage/debian"
cat >"$stage/debian/changelog" <<EOF
voice-kiosk ($version) bookworm; urgency=medium

  * voice-kiosk $upstream built from its source tree (packaging/build-deb.sh).

 -- voice-kiosk maintainers <maintainers@users.noreply.r-seed-6ce3f66a.example>  $(LC_ALL=C date -u -R -d "@$epoch")
EOF

# -- what the build needs ----------------------------------------------------------------------
if ! command -v dpkg-checkbuilddeps >/dev/null \
        || ! (cd "$stage" && dpkg-checkbuilddeps >/dev/null 2>&1); then
    say "installing the build dependencies (debian/control's Build-Depends)"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends dpkg-dev >/dev/null
    apt_get build-dep -y -qq --no-install-recommends "$stage" >/dev/null
fi
if ((run_lintian)) && ! command -v lintian >/dev/null; then
    say "installing lintian"
    apt_get install -y -qq --no-install-recommends lintian >/dev/null
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
base=voice-kiosk_${version}_${arch}

# The SBOM generator (PyPI), in a virtual environment of its own, kept between builds.
if [[ $(id -u) -eq 0 ]]; then
    cache=/var/cache/voice-kiosk-build
else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/voice-kiosk-build
fi
tools=$cache/${CYCLONEDX_BOM//=/-}
if [[ ! -x $tools/bin/cyclonedx-py ]]; then
    say "installing $CYCLONEDX_BOM into $tools"
    rm -rf "$tools"
    /usr/bin/python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q --disable-pip-version-check "$CYCLONEDX_BOM"
fi

# -- the build ---------------------------------------------------------------------------------
say "building $base.deb in $stage"
log=$work/build.log
# Debian's tools and Python only: no virtual environment or other interpreter on the PATH.
# pip's cache of its own: wheels it builds (PyAudio, systemd-python) must come from Debian's
# Python, never from a cache another interpreter filled (they would link to its library).
if ! (cd "$stage" && env -u VIRTUAL_ENV -u PYTHONPATH PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_CACHE_DIR="$cache/pip" VK_CYCLONEDX="$tools/bin/cyclonedx-py" \
        dpkg-buildpackage -b -us -uc) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    say "the build failed (the end of its log is above)"
    exit 1
fi
grep -E '^I: dh-virtualenv|imported [0-9]+ kiosk modules' "$log" >&2 || true

mkdir -p "$out"
for ext in deb buildinfo changes; do
    install -m 0644 "$work/$base.$ext" "$out/$base.$ext"
done
dpkg-deb --fsys-tarfile "$out/$base.deb" \
    | tar -xO ./usr/share/doc/voice-kiosk/sbom.cdx.json >"$out/$base.cdx.json"

if ((run_lintian)); then
    if lintian --fail-on error --info "$out/$base.deb" >"$out/$base.lintian.txt" 2>&1; then
        say "lintian: no errors ($(grep -c '^W: ' "$out/$base.lintian.txt" || true) warnings," \
            "$(grep -c '^I: ' "$out/$base.lintian.txt" || true) notes; $out/$base.lintian.txt)"
    else
        cat "$out/$base.lintian.txt" >&2
        say "lintian reported errors"
        exit 1
    fi
fi

say "built in $((SECONDS - started)) s:"
ls -l "$out/$base".* >&2
printf '%s\n' "$out/$base.deb"
