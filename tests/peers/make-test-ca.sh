#!/usr/bin/env bash
# make-test-ca.sh DIR - certificates for the peer tests over TLS, made fresh
# on every run (nothing committed that could expire), with the openssl CLI
# that every peer can call (the Rust tests make theirs with rcgen):
#   ca.pem            the test CA (trusted by the peers in the tests)
#   server.pem/.key   a leaf for localhost and 127.0.0.1, signed by the CA
#   wrong-name.pem/.key  a leaf for other.example only, signed by the CA
#   other-ca.pem      a second CA that signed nothing the servers present
#   server.spki       base64 SHA-256 of server.pem's public key (Chromium's
#                     --ignore-certificate-errors-spki-list pin)
set -euo pipefail
dir="${1:?usage: make-test-ca.sh DIR}"
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

ca() { # name
  openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=ws peer-test $1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
leaf() { # name subjectAltName
  openssl req "${ec[@]}" -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca
ca other-ca
leaf server "DNS:localhost,IP:127.0.0.1"
leaf wrong-name "DNS:other.example"
openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64 > server.spki
