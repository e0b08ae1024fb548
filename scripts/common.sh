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

# Create .venv (once) and install the project into it with the given extras spec.
ensure_venv() {
    local spec="$1"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e "$spec"
}

# PyAudio builds against PortAudio; the Azure SDK needs OpenSSL and ALSA's library;
# espeak-ng is the offline voice (the espeak TTS provider); soundfile (audio files) brings
# its own libsndfile on x86-64 and 64-bit ARM, and uses libsndfile1 elsewhere (32-bit ARM).
RUNTIME_PACKAGES=(
    python3 python3-venv python3-pip python3-dev gcc ca-certificates libssl3 libasound2
    portaudio19-dev libportaudio2 alsa-utils espeak-ng libsndfile1
)
# Tests also make speech fixtures (sox), pace audio commands (pv), check zeroconf in a
# private network namespace (iproute2) and the service unit (systemd-analyze).
TEST_PACKAGES=(sox pv iproute2 systemd)
