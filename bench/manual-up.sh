#!/usr/bin/env bash
# The baseline for `make bench`: what a sysadmin does by hand from a wiki page (the seed's steps), with
# the same local images: an openssl CA and server certificate, the nginx and registry configs and a pod
# YAML written out, `podman play kube`, wait for /v2/, then a skopeo push and pull to prove it works.
#
#   bench/manual-up.sh DIR PORT POD REGISTRY_IMAGE NGINX_IMAGE TEST_IMAGE_OCI_DIR
set -euo pipefail
dir=$1 port=$2 pod=$3 registry_image=$4 nginx_image=$5 test_image=$6
mkdir -p "$dir"/{tls,nginx,registry,data}
cd "$dir"

# CA and server certificate (ECDSA P-256), as the usual guides do it.
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=manual CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
openssl ecparam -name prime256v1 -genkey -noout -out tls/server.key 2>/dev/null
openssl req -new -key tls/server.key -subj "/CN=localhost" -out server.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
  -extfile server.ext -out tls/server.crt 2>/dev/null

cat >nginx/registry.conf <<CONF
server {
    listen $port ssl;
    server_name localhost;
    ssl_certificate /etc/nginx/tls/server.crt;
    ssl_certificate_key /etc/nginx/tls/server.key;
    client_max_body_size 0;
    location /v2/ {
        proxy_pass http://127.0.0.1:5000;
        proxy_set_header Host \$http_host;
        proxy_set_header X-Real-IP \$remote_addr;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
    }
}
CONF
cat >registry/config.yml <<'YML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
cat >pod.yaml <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  containers:
  - name: registry
    image: $registry_image
    args: [serve, /etc/docker/registry/config.yml]
    volumeMounts:
    - {name: data, mountPath: /var/lib/registry}
    - {name: config, mountPath: /etc/docker/registry}
  - name: nginx
    image: $nginx_image
    ports:
    - {containerPort: $port, hostPort: $port}
    volumeMounts:
    - {name: conf, mountPath: /etc/nginx/conf.d}
    - {name: tls, mountPath: /etc/nginx/tls}
  volumes:
  - {name: data, hostPath: {path: $dir/data, type: Directory}}
  - {name: config, hostPath: {path: $dir/registry, type: Directory}}
  - {name: conf, hostPath: {path: $dir/nginx, type: Directory}}
  - {name: tls, hostPath: {path: $dir/tls, type: Directory}}
YAML
podman play kube pod.yaml >/dev/null

for _ in $(seq 1 600); do
  curl -sf --cacert ca.crt -o /dev/null "https://localhost:$port/v2/" && break
  sleep 0.05
done

# Prove it: push a test image and pull it back.
mkdir -p certs && cp ca.crt certs/ca.crt
skopeo copy -q --dest-cert-dir certs "oci:$test_image" "docker://localhost:$port/check/test:1"
skopeo copy -q --src-cert-dir certs "docker://localhost:$port/check/test:1" "dir:$dir/pulled"
