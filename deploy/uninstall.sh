#!/usr/bin/env bash
# Remove picharge installed by deploy/install.sh. Run as root:   sudo deploy/uninstall.sh
#
# Stops and disables the service and removes the unit, /opt/picharge (the virtual
# environment and the examples) and the udev rules. The configuration (/etc/picharge),
# the state (/var/lib/picharge: transactions not yet sent, the authorization cache, the
# OCPP settings) and the user stay, so a later install carries on where this one stopped.
#
# Options:
#   --purge   also delete /etc/picharge, /var/lib/picharge and the user picharge
#
# PICHARGE_ROOT and PICHARGE_DRY_SYSTEM work as for install.sh: with a staging root,
# systemctl, udevadm and userdel are only logged to $PICHARGE_ROOT/var/log/picharge-install.log.
set -euo pipefail

ROOT="${PICHARGE_ROOT:-}"
ROOT="${ROOT%/}"
DRY="${PICHARGE_DRY_SYSTEM:-0}"
if [ -n "$ROOT" ]; then
    DRY=1
fi
LOG="$ROOT/var/log/picharge-install.log"
UNIT=picharge.service
PURGE=0

while [ $# -gt 0 ]; do
    case "$1" in
    --purge)
        PURGE=1
        shift
        ;;
    -h | --help)
        sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "uninstall.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf '==> %s\n' "$*"; }

system() {
    if [ "$DRY" = 1 ]; then
        mkdir -p "$(dirname "$LOG")"
        local line="" arg
        for arg in "$@"; do
            if [[ ! "$arg" =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then
                arg="$(printf '%q' "$arg")"
            fi
            line+="${line:+ }$arg"
        done
        printf '%s\n' "$line" >>"$LOG"
    else
        "$@"
    fi
}

if [ "$DRY" != 1 ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run as root: sudo $0" >&2
    exit 1
fi

if [ -e "$ROOT/etc/systemd/system/$UNIT" ]; then
    say "stopping and disabling $UNIT (the contactor opens, transactions are stopped)"
    system systemctl disable --now "$UNIT"
    rm -f "$ROOT/etc/systemd/system/$UNIT"
    system systemctl daemon-reload
fi

say "removing /opt/picharge"
rm -rf "$ROOT/opt/picharge"

if [ -e "$ROOT/etc/udev/rules.d/60-picharge.rules" ]; then
    say "removing the udev rules"
    rm -f "$ROOT/etc/udev/rules.d/60-picharge.rules"
    system udevadm control --reload-rules
fi

if [ "$PURGE" = 1 ]; then
    say "purging the configuration, the state and the user"
    rm -rf "$ROOT/etc/picharge" "$ROOT/var/lib/picharge"
    if [ "$DRY" = 1 ] || getent passwd picharge >/dev/null; then
        system userdel picharge
    fi
else
    say "kept: /etc/picharge, /var/lib/picharge and the user picharge (--purge removes them)"
fi
say "done (dtoverlay=pwm, dtoverlay=w1-gpio and the enabled I2C/UART stay in the boot configuration)"
