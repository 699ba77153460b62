#!/usr/bin/env bash
# Install the Debian / Raspberry Pi OS packages that picharge needs. Idempotent: it asks apt
# only for what is missing. `make setup` (and so `make demo`) runs it as it is; `make test`
# adds --test for what only the tests use, so a charger never gets a browser or a broker.
#   python3-venv              the virtual environment
#   libsystemd-dev pkg-config build systemd-python (journal, sd_notify)
#   gcc python3-dev           compile systemd-python
# with --test:
#   mbpoll                    an independent Modbus master the tests compare the meter driver with
#   systemd                   systemd-analyze, to verify the unit file
#   mosquitto                 the MQTT broker the tests start (no system service is used)
#   chromium                  the web page's test in a real (headless) browser, driven by Playwright
#   ngspice                   simulates the reference CP/PP front-end (tests/test_frontend_spice.py)
set -euo pipefail

packages=(python3-venv python3-dev gcc libsystemd-dev pkg-config)
if [ "${1:-}" = "--test" ]; then
    packages+=(mbpoll systemd mosquitto chromium ngspice)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing system packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
