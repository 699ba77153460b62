#!/usr/bin/env bash
# Install (or upgrade) picharge as a systemd service on Raspberry Pi OS (bookworm, arm64 and
# armhf) or Debian. Run from a checkout, as root:   sudo deploy/install.sh
#
# What it does, each step idempotent (re-running it upgrades in place):
#   1. system packages (python3-venv, build tools for systemd-python, i2c-tools, and
#      python3-lgpio where the distribution has it: gpiozero's pin factory on bookworm);
#   2. the system user "picharge" in the groups gpio, i2c and dialout;
#   3. a virtual environment in /opt/picharge/venv with picharge installed from this checkout;
#   4. /etc/picharge/config.toml from an example (mode 0600, owned by picharge), only when
#      no configuration exists: yours is never overwritten;
#   5. I2C, the UART and the PWM overlay: raspi-config nonint where present, else
#      instructions; dtoverlay=pwm is added to config.txt, and dtoverlay=w1-gpio,gpiopin=4
#      when the configuration names a DS18B20 (a reboot makes these effective);
#   6. udev rules for GPIO, I2C and PWM access where Raspberry Pi OS's own rules are absent;
#   7. the unit /etc/systemd/system/picharge.service, NOT enabled on a first install: the
#      service must not start (at the next boot either) on the example configuration before
#      the wiring is checked; `--enable` enables it, an upgrade keeps it as it was, and a
#      running service restarts.
#
# Options:
#   --example NAME   which deploy/examples/NAME.toml becomes the first configuration
#                    (default single-phase-sdm120-rdm6300)
#   --enable         enable the unit (do this once check-hw passed on the wired board)
#   --no-enable      the default; kept so older instructions still work
#
# Staging root (DESTDIR-style), used by the tests: PICHARGE_ROOT=/tmp/x puts every file
# under /tmp/x. With a staging root, commands that act on the running system (apt-get,
# useradd, usermod, groupadd, chown, systemctl, udevadm, raspi-config, pip) are never
# run: they are appended to $PICHARGE_ROOT/var/log/picharge-install.log instead
# (PICHARGE_DRY_SYSTEM=1 does the same without a staging root). The virtual environment is
# then created without pip, and the picharge installation is the logged pip command.
# PICHARGE_PYTHON picks the interpreter for the venv (default /usr/bin/python3).
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${PICHARGE_ROOT:-}"
ROOT="${ROOT%/}"
DRY="${PICHARGE_DRY_SYSTEM:-0}"
if [ -n "$ROOT" ]; then
    DRY=1 # a staging root is never the running system
fi
PYTHON="${PICHARGE_PYTHON:-/usr/bin/python3}"
USER_NAME=picharge
GROUPS_NEEDED=(gpio i2c dialout)
PREFIX=/opt/picharge
VENV="$PREFIX/venv"
CONF_DIR=/etc/picharge
UNIT_DIR=/etc/systemd/system
UNIT=picharge.service
LOG="$ROOT/var/log/picharge-install.log"
EXAMPLE=single-phase-sdm120-rdm6300
ENABLE=0

while [ $# -gt 0 ]; do
    case "$1" in
    --example)
        EXAMPLE="${2:?--example needs a name}"
        shift 2
        ;;
    --enable)
        ENABLE=1
        shift
        ;;
    --no-enable)
        ENABLE=0
        shift
        ;;
    -h | --help)
        sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Run a command that changes the running system, or only log it in dry mode.
system() {
    if [ "$DRY" = 1 ]; then
        mkdir -p "$(dirname "$LOG")"
        local line="" arg
        for arg in "$@"; do
            if [[ ! "$arg" =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then
                arg="$(printf '%q' "$arg")" # logged as a shell would need it
            fi
            line+="${line:+ }$arg"
        done
        printf '%s\n' "$line" >>"$LOG"
    else
        "$@"
    fi
}

if [ "$DRY" != 1 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root: sudo $0" >&2
    exit 1
fi
EXAMPLE_FILE="$SOURCE/deploy/examples/$EXAMPLE.toml"
if [ ! -f "$EXAMPLE_FILE" ]; then
    echo "install.sh: no example $EXAMPLE_FILE; choose one of:" >&2
    ls "$SOURCE/deploy/examples" >&2
    exit 2
fi
[ "$DRY" = 1 ] && say "dry run: system commands go to $LOG"

# --- 1. system packages -----------------------------------------------------------------
say "system packages"
packages=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev i2c-tools)
if apt-cache show python3-lgpio >/dev/null 2>&1; then
    packages+=(python3-lgpio) # Raspberry Pi OS: gpiozero's default pin factory
else
    note "python3-lgpio is not packaged here; gpiozero falls back to another pin factory"
fi
system env DEBIAN_FRONTEND=noninteractive apt-get update -qq
system env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}"

# --- 2. the service user -----------------------------------------------------------------
say "user $USER_NAME in ${GROUPS_NEEDED[*]}"
exists_in() { # exists_in passwd|group NAME: against the root being installed into
    if [ "$DRY" = 1 ]; then
        grep -q "^$2:" "$ROOT/etc/$1" 2>/dev/null
    else
        getent "$1" "$2" >/dev/null
    fi
}
for group in "${GROUPS_NEEDED[@]}"; do
    exists_in group "$group" || system groupadd --system "$group"
done
if ! exists_in passwd "$USER_NAME"; then
    system useradd --system --user-group --home-dir /var/lib/picharge --no-create-home \
        --shell /usr/sbin/nologin --comment "picharge EV charge point controller" "$USER_NAME"
fi
system usermod --append --groups "$(
    IFS=,
    echo "${GROUPS_NEEDED[*]}"
)" "$USER_NAME"

# --- 3. the virtual environment --------------------------------------------------------
say "virtual environment $VENV"
mkdir -p "$ROOT$PREFIX"
if [ -x "$ROOT$VENV/bin/python" ] && "$ROOT$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    note "exists: upgrading picharge in it"
else
    rm -rf "$ROOT$VENV" # missing or broken (e.g. after a Python upgrade): start afresh
    # System site packages: apt's python3-lgpio is how gpiozero reaches GPIO on bookworm.
    if [ "$DRY" = 1 ]; then
        "$PYTHON" -m venv --system-site-packages --without-pip "$ROOT$VENV"
    else
        "$PYTHON" -m venv --system-site-packages "$ROOT$VENV"
    fi
fi
system "$VENV/bin/pip" install --quiet --upgrade pip
system "$VENV/bin/pip" install --quiet --upgrade "$SOURCE"
mkdir -p "$ROOT$PREFIX/examples"
install -m 0644 "$SOURCE"/deploy/examples/*.toml "$ROOT$PREFIX/examples/"

# --- 4. the configuration --------------------------------------------------------------
say "configuration $CONF_DIR/config.toml"
install -d -m 0750 "$ROOT$CONF_DIR"
system chgrp "$USER_NAME" "$CONF_DIR"
if [ -e "$ROOT$CONF_DIR/config.toml" ]; then
    note "kept: an existing configuration is never overwritten"
else
    install -m 0600 "$EXAMPLE_FILE" "$ROOT$CONF_DIR/config.toml"
    system chown "$USER_NAME:$USER_NAME" "$CONF_DIR/config.toml"
    note "from deploy/examples/$EXAMPLE.toml: edit it before starting the service"
fi

# --- 5. I2C, UART, PWM -------------------------------------------------------------------
say "interfaces: I2C, UART, PWM"
if command -v raspi-config >/dev/null 2>&1; then
    system raspi-config nonint do_i2c 0        # enable I2C (0 = enable)
    system raspi-config nonint do_serial_hw 0  # enable the UART hardware
    system raspi-config nonint do_serial_cons 1 # no login console on it
else
    note "raspi-config not found: enable them by hand (then reboot):"
    note "  config.txt: dtparam=i2c_arm=on and enable_uart=1"
    note "  cmdline.txt: remove console=serial0,115200 (the UART is the meter's or reader's)"
fi
boot_config=""
for candidate in /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$ROOT$candidate" ]; then
        boot_config="$candidate"
        break
    fi
done
if [ -n "$boot_config" ]; then
    if grep -Eq '^[[:space:]]*dtoverlay=pwm(-2chan)?([,[:space:]]|$)' "$ROOT$boot_config"; then
        note "$boot_config already loads a PWM overlay"
    else
        printf '\n# picharge: hardware PWM for the control pilot (GPIO18)\ndtoverlay=pwm\n' \
            >>"$ROOT$boot_config"
        note "added dtoverlay=pwm to $boot_config: reboot to make it effective"
    fi
else
    note "no config.txt found: add dtoverlay=pwm to the boot configuration (GPIO18 PWM)"
fi
# A DS18B20 (temperature_type = "ds18b20" in a [[connector]]) needs the 1-wire bus on GPIO4;
# added only when the configuration names one (run the installer again after adding it).
if grep -Eq '^[[:space:]]*temperature_type[[:space:]]*=[[:space:]]*"ds18b20"' \
    "$ROOT$CONF_DIR/config.toml" 2>/dev/null; then
    if [ -z "$boot_config" ]; then
        note "no config.txt found: add dtoverlay=w1-gpio,gpiopin=4 (the DS18B20 on GPIO4)"
    elif grep -Eq '^[[:space:]]*dtoverlay=w1-gpio([,[:space:]]|$)' "$ROOT$boot_config"; then
        note "$boot_config already loads the 1-wire overlay"
    else
        printf '\n# picharge: 1-wire bus for the DS18B20 temperature sensor (GPIO4)\n%s\n' \
            'dtoverlay=w1-gpio,gpiopin=4' >>"$ROOT$boot_config"
        note "added dtoverlay=w1-gpio,gpiopin=4 to $boot_config: reboot to make it effective"
    fi
fi

# --- 6. device permissions ---------------------------------------------------------------
RULES=/etc/udev/rules.d/60-picharge.rules
if [ -e "$ROOT/etc/udev/rules.d/99-com.rules" ]; then
    note "Raspberry Pi OS udev rules give gpio, i2c and dialout their devices"
    rm -f "$ROOT$RULES"
else
    say "udev rules $RULES"
    mkdir -p "$ROOT/etc/udev/rules.d"
    cat >"$ROOT$RULES" <<'RULES'
# picharge (deploy/install.sh): device access for the service's groups, as Raspberry Pi
# OS's 99-com.rules grants it; not installed where that file exists.
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"
SUBSYSTEM=="pwm*", PROGRAM="/bin/sh -c 'chgrp -R gpio /sys/class/pwm/ /sys/devices/platform/*/*.pwm/pwm/ 2>/dev/null; chmod -R g+rwX /sys/class/pwm/ /sys/devices/platform/*/*.pwm/pwm/ 2>/dev/null; true'"
RULES
    chmod 0644 "$ROOT$RULES"
    system udevadm control --reload-rules
    system udevadm trigger --subsystem-match=gpio --subsystem-match=i2c-dev --subsystem-match=pwm
fi

# --- 7. the unit -------------------------------------------------------------------------
say "systemd unit $UNIT_DIR/$UNIT"
mkdir -p "$ROOT$UNIT_DIR"
install -m 0644 "$SOURCE/systemd/$UNIT" "$ROOT$UNIT_DIR/$UNIT"
system systemctl daemon-reload
if [ "$ENABLE" = 1 ]; then
    system systemctl enable "$UNIT"
fi
system systemctl try-restart "$UNIT" # an upgrade: restart it if it was running

say "done"
note "1. edit $CONF_DIR/config.toml (sudoedit $CONF_DIR/config.toml)"
note "2. reboot once if interfaces were enabled, then check the wiring:"
note "   sudo systemctl stop picharge   (an upgrade: the service may be running)"
note "   cd /tmp && sudo -u $USER_NAME $VENV/bin/picharge check-hw --config $CONF_DIR/config.toml"
note "3. only when check-hw passed: sudo systemctl enable --now picharge; journalctl -u picharge -f"
note "4. the web page: set its password, then open it through an SSH tunnel (it listens on"
note "   127.0.0.1:8080 until [web] listen opens it to your network):"
note "   sudo -u $USER_NAME $VENV/bin/picharge web-password --config $CONF_DIR/config.toml"
note "   ssh -L 8080:127.0.0.1:8080 <this pi>, then http://127.0.0.1:8080/"
