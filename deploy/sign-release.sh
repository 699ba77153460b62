#!/usr/bin/env bash
# Sign a picharge release for over-the-air updates: writes PACKAGE.sig beside PACKAGE.
#
#   deploy/sign-release.sh SIGNING_KEY SIGNING_CERT PACKAGE
#
# SIGNING_KEY   the release signing key (PEM, EC or RSA), kept offline
# SIGNING_CERT  its certificate (PEM), issued by the root chargers trust as
#               [ocpp] firmware_signing_ca; intermediates may follow it in the same file
# PACKAGE       the wheel or sdist (python -m build), e.g. dist/picharge-0.2.0-py3-none-any.whl
#
# Publish PACKAGE.sig next to PACKAGE: a plain OCPP UpdateFirmware fetches <location>.sig
# and installs nothing whose signature does not verify. The file holds the certificate
# chain, then the signature over the package's SHA-256 (RSA PKCS#1 v1.5 or ECDSA DER),
# base64 (the format of controller/csms/firmware_signature.py):
#
#   -----BEGIN CERTIFICATE-----              (the signing certificate, then intermediates)
#   -----END CERTIFICATE-----
#   -----BEGIN PICHARGE FIRMWARE SIGNATURE-----
#   MEUCIQ...
#   -----END PICHARGE FIRMWARE SIGNATURE-----
#
# For SignedUpdateFirmware, send the certificate as signingCertificate and the base64
# between the signature lines (joined) as signature. Needs only openssl.
set -euo pipefail

if [ "$#" -ne 3 ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
KEY="$1"
CERT="$2"
PACKAGE="$3"
for file in "$KEY" "$CERT" "$PACKAGE"; do
    if [ ! -r "$file" ]; then
        echo "sign-release: cannot read $file" >&2
        exit 2
    fi
done

# The key must belong to the certificate: a signature by another key would be refused by
# every charger, and it is better to learn that here than after publishing.
if [ "$(openssl pkey -in "$KEY" -pubout)" != "$(openssl x509 -in "$CERT" -noout -pubkey)" ]; then
    echo "sign-release: $KEY is not the key of the certificate in $CERT" >&2
    exit 2
fi

OUT="$PACKAGE.sig"
TMP="$(mktemp "$OUT.XXXXXX")"
trap 'rm -f "$TMP"' EXIT
{
    # every certificate of CERT, as PEM blocks only (no text dumps, no keys)
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$CERT"
    echo "-----BEGIN PICHARGE FIRMWARE SIGNATURE-----"
    openssl dgst -sha256 -sign "$KEY" -binary "$PACKAGE" | openssl base64 -A | fold -w 64
    echo
    echo "-----END PICHARGE FIRMWARE SIGNATURE-----"
} >"$TMP"
mv "$TMP" "$OUT"
trap - EXIT
echo "$OUT"
