# Shared by scripts/run and scripts/test: Debian packages and the project's virtualenv.

# Install the Debian packages that are missing (as root, or through sudo).
ensure_debian_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Stop, with what to do, on a system voice-satellite cannot run on: it needs a 64-bit
# system (the Azure Speech SDK and the wake word libraries have no 32-bit ARM build) with
# Debian bookworm's C library or newer (the wake word wheels need glibc 2.35).
check_platform() {
    local arch glibc
    arch="$(uname -m)"
    case "$arch" in
        x86_64 | aarch64) ;;
        *)
            echo "voice-satellite needs a 64-bit system (arm64 or amd64); this one is $arch." \
                "On a Raspberry Pi, install Raspberry Pi OS (64-bit), bookworm or newer." >&2
            return 1
            ;;
    esac
    glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
    if [ -z "$glibc" ] || ! dpkg --compare-versions "$glibc" ge 2.35; then
        echo "voice-satellite needs Debian 12 (bookworm) or newer: this system's C library is" \
            "${glibc:-unknown}, older than bookworm's 2.36. Upgrade the OS first." >&2
        return 1
    fi
}

# Stop unless python3 is 3.11 or newer (bookworm's).
check_python() {
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "voice-satellite needs Python 3.11 or newer; python3 here is" \
            "$(python3 -c 'import platform; print(platform.python_version())')." >&2
        return 1
    fi
}

# Create .venv (once) and install the project into it with the given extras spec, unless
# that spec is already installed from this pyproject.toml: a restart needs no network.
ensure_venv() {
    local spec="$1"
    local stamp=".venv/.installed-${spec//[^a-z]/_}"
    local wanted
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] \
        && .venv/bin/python -c 'import importlib.metadata as m; m.distribution("voice-satellite")' \
            2>/dev/null; then
        return 0
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e "$spec"
    echo "$wanted" >"$stamp"
}

# PyAudio builds against PortAudio; the Azure SDK needs OpenSSL and ALSA's library;
# espeak-ng is the offline voice (the espeak TTS provider).
# procps has /bin/kill, the service unit's reload command.
RUNTIME_PACKAGES=(
    python3 python3-venv python3-pip python3-dev gcc ca-certificates libssl3 libasound2
    portaudio19-dev libportaudio2 alsa-utils espeak-ng procps
)
# Tests also make speech fixtures (sox), pace audio commands (pv), check zeroconf in a
# private network namespace (iproute2) and the service unit (systemd-analyze).
TEST_PACKAGES=(sox pv iproute2 systemd)
