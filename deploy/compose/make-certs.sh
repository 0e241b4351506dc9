#!/usr/bin/env sh
# A CA and a certificate for each NATS node (names nats-1..3 and localhost) in ./certs.
set -eu
cd "$(dirname "$0")"
mkdir -p certs && cd certs
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=flowbus test CA" \
  -keyout ca-key.pem -out ca.pem
for node in nats-1 nats-2 nats-3; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$node" -keyout "$node-key.pem" -out "$node.csr"
  printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" "$node" > "$node.ext"
  openssl x509 -req -in "$node.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
    -extfile "$node.ext" -out "$node.pem"
  rm "$node.csr" "$node.ext"
done
chmod 0644 ./*.pem
