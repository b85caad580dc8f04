#!/bin/sh
# Check the agency's OpenPGP signature of a webhook body with GnuPG and with
# Sequoia (docs/partner-webhooks.md).
#
#   verify-webhook-signature.sh BODY.json SIGNATURE-HEADER AGENCY.asc
#
# BODY.json         the request body, byte for byte as received
# SIGNATURE-HEADER  a file holding the value of the herald-pgp-signature header
# AGENCY.asc        the agency's public key, whose fingerprint you checked with your contact
#
# The example receivers (docs/examples/go, docs/examples/node) keep both
# files for each verified request when SAVE_DIR is set.
set -eu
body=$1 header=$2 agency=$3
work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill all 2>/dev/null; rm -rf "$work"' EXIT
gpg --batch --quiet --import "$agency"

# The header is base64 of a binary detached signature of the body.
tr -d '\r\n' < "$header" | base64 -d > "$work/body.sig"
gpg --batch --verify "$work/body.sig" "$body"
sq verify --signer-cert "$agency" --detached "$work/body.sig" "$body"
echo "good signature by the agency key, checked by gpg and by sq" >&2
