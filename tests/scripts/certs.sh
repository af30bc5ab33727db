#!/usr/bin/env bash
# A throwaway certificate authority and a server certificate signed by it,
# for the tests' TLS endpoints on loopback (PostgreSQL with ssl = on, the
# TLS proxy in front of tansu).
#
#   certs.sh DIR   make DIR/ca.pem, DIR/server.pem and DIR/server.key
#                  (no-op when DIR/server.pem is there)
#
# The server certificate names 127.0.0.1 and localhost only, so that a test
# reaching the same server by another address sees a name mismatch. The CA's
# key is deleted once the server certificate is signed: nothing else is ever
# signed with it. Needs the `openssl` command (test.sh installs it).
set -euo pipefail

DIR="${1:?usage: $0 DIR}"
[[ -f "$DIR/server.pem" ]] && exit 0
mkdir -p "$DIR"
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# P-256 keys: fast to make, and every TLS stack in the tests takes them.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/ca.key" -out "$work/ca.pem" -days 3650 \
    -subj "/CN=ionflux test CA $(date +%s%N)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
cat >"$work/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$work/server.ext" \
    -out "$work/server.pem" 2>/dev/null
chmod 600 "$work/server.key"
# server.pem last: its presence means the set is complete.
mv "$work/ca.pem" "$work/server.key" "$DIR/"
mv "$work/server.pem" "$DIR/"
