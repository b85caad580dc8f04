#!/bin/sh
# Check a Herald email with GnuPG and with Sequoia (docs/partner-email.md):
# decrypt it if it is encrypted, then verify the agency's signature.
#
#   verify-email.sh MESSAGE.eml AGENCY.asc [YOUR-SECRET-KEY.asc] > signed-part.eml
#
# MESSAGE.eml   the message exactly as your mail server stored it (CRLF line endings)
# AGENCY.asc    the agency's public key, whose fingerprint you checked with your contact
# YOUR-SECRET-KEY.asc  your mailbox's secret key; needed only for an encrypted message
#
# gpg works in a temporary home holding only these keys, so "Good signature"
# can only mean the agency key. Both gpg and sq must agree; the script exits
# non-zero otherwise. It prints the signed part (the alert's text, headers
# first) on standard output.
set -eu
msg=$1 agency=$2 secret=${3:-}
work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill all 2>/dev/null; rm -rf "$work"' EXIT
gpg --batch --quiet --import "$agency"

# header FILE NAME: the value of the header NAME of the MIME entity in FILE.
header() {
  tr -d '\r' < "$1" | awk -v want="$(echo "$2" | tr A-Z a-z):" '
    /^$/ { exit }
    /^[ \t]/ { if (on) v = v $0; next }
    { on = tolower(substr($0, 1, length(want))) == want; if (on) v = substr($0, length(want) + 1) }
    END { print v }'
}

# boundary FILE: the boundary of the multipart entity in FILE.
boundary() {
  header "$1" content-type | sed -n -e 's/.*boundary="\([^"]*\)".*/\1/p' -e t -e 's/.*boundary=\([^; ]*\).*/\1/p'
}

# part FILE BOUNDARY N: body part N of the multipart entity in FILE, byte
# for byte: what lies between the N-th boundary line and the line break
# before the next one.
part() {
  awk -v b="--$2" -v n="$3" '
    { line = $0; sub(/\r$/, "", line) }
    line == b || line == b "--" {
      if (k == n) { sub(/\r$/, "", prev); printf "%s", prev; exit }
      k++; held = 0; next
    }
    k == n { if (held) printf "%s\n", prev; prev = $0; held = 1 }' "$1"
}

# armour BEGIN-LINE-TYPE: the ASCII-armoured block of that type on standard input.
armour() {
  tr -d '\r' | sed -n "/^-----BEGIN PGP $1-----\$/,/^-----END PGP $1-----\$/p"
}

entity=$msg
case $(header "$msg" content-type) in
*multipart/encrypted*)
  [ -n "$secret" ] || { echo "$msg is encrypted: give your secret key as the third argument" >&2; exit 2; }
  # The second part holds the OpenPGP message, encrypted to your key.
  part "$msg" "$(boundary "$msg")" 2 | armour MESSAGE > "$work/encrypted.asc"
  gpg --batch --quiet --import "$secret"
  gpg --batch --decrypt "$work/encrypted.asc" > "$work/inner.eml"
  sq decrypt --recipient-key "$secret" "$work/encrypted.asc" > "$work/inner-sq.eml"
  cmp -s "$work/inner.eml" "$work/inner-sq.eml" || { echo "gpg and sq decrypted different messages" >&2; exit 1; }
  echo "decrypted with gpg and with sq" >&2
  # What was encrypted is a signed message: verify it below.
  entity=$work/inner.eml
  ;;
esac

case $(header "$entity" content-type) in
*multipart/signed*) ;;
*) echo "not an OpenPGP/MIME signed message: do not act on it" >&2; exit 1 ;;
esac
b=$(boundary "$entity")
part "$entity" "$b" 1 > "$work/part.eml"
part "$entity" "$b" 2 | armour SIGNATURE > "$work/signature.asc"

gpg --batch --verify "$work/signature.asc" "$work/part.eml"
sq verify --signer-cert "$agency" --detached "$work/signature.asc" "$work/part.eml"
echo "good signature by the agency key, checked by gpg and by sq" >&2
cat "$work/part.eml"
