#!/usr/bin/env bash
# Builds offline stand-ins for the official `registry:2` and `nginx:alpine` images from this host's Debian
# packages (docker-registry, nginx), and saves them as OCI archives: the same air-gapped path users take
# with `registry-up --image-archive`. No network is used.
#
#   tests/images/build.sh OUT_DIR [TAG]
#
# Writes OUT_DIR/registry.tar and OUT_DIR/nginx.tar holding localhost/registry-up-test/{registry,nginx}:TAG.
# The images are removed from Podman's store again afterwards, so that tests load them from the archives.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR [TAG]}
tag=${2:-latest}
prefix=localhost/registry-up-test
mkdir -p "$out"

for tool in podman ldd tar; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing: run 'make deps' first" >&2; exit 2; }
done
[ -x /usr/bin/docker-registry ] || { echo "build.sh: /usr/bin/docker-registry is missing: apt-get install docker-registry" >&2; exit 2; }
[ -x /usr/sbin/nginx ] || { echo "build.sh: /usr/sbin/nginx is missing: apt-get install nginx" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# copy_binary ROOT SRC DEST: the binary and every shared library ldd lists, at the same paths.
copy_binary() {
  local root=$1 src=$2 dest=$3
  install -D -m 0755 "$src" "$root$dest"
  ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
    [ -e "$lib" ] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

base_files() {
  local root=$1
  mkdir -p "$root"/{etc,tmp,run,var/tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# save NAME ROOT ENTRYPOINT_JSON
save() {
  local name=$1 root=$2 entrypoint=$3 ref="$prefix/$1:$tag"
  tar --numeric-owner -C "$root" -c . |
    podman import -q --change "ENTRYPOINT $entrypoint" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$ref" >/dev/null
  rm -f "$out/$name.tar.tmp"
  podman save -q --format oci-archive -o "$out/$name.tar.tmp" "$ref"
  mv "$out/$name.tar.tmp" "$out/$name.tar"
  # Tolerate a tag still used by a running test pod: the archive is what tests load.
  podman rmi "$ref" >/dev/null 2>&1 || true
  echo "built $ref -> $out/$name.tar ($(du -h "$out/$name.tar" | cut -f1))"
}

# --- registry: /bin/registry serve /etc/docker/registry/config.yml, as the official image runs it.
r="$work/registry"
base_files "$r"
copy_binary "$r" /usr/bin/docker-registry /bin/registry
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
mkdir -p "$r/etc/docker/registry" "$r/var/lib/registry"
cat >"$r/etc/docker/registry/config.yml" <<'YML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
YML
save registry "$r" '["/bin/registry", "serve", "/etc/docker/registry/config.yml"]'

# --- nginx: master as root, workers as user nginx (101), conf.d included inside http {} as upstream does.
n="$work/nginx"
base_files "$n"
copy_binary "$n" /usr/sbin/nginx /usr/sbin/nginx
printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n' >"$n/etc/passwd"
printf 'root:x:0:\nnginx:x:101:\n' >"$n/etc/group"
mkdir -p "$n/etc/nginx/conf.d" "$n/var/log/nginx" "$n/var/cache/nginx" \
  "$n"/var/lib/nginx/{body,proxy,fastcgi,uwsgi,scgi} "$n/usr/share/nginx/html"
cp /etc/nginx/mime.types "$n/etc/nginx/mime.types"
ln -s /dev/stdout "$n/var/log/nginx/access.log"
ln -s /dev/stderr "$n/var/log/nginx/error.log"
cat >"$n/etc/nginx/nginx.conf" <<'CONF'
user  nginx;
worker_processes  auto;
error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;
events {
    worker_connections  1024;
}
http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;
    access_log  /var/log/nginx/access.log;
    sendfile        on;
    keepalive_timeout  65;
    include /etc/nginx/conf.d/*.conf;
}
CONF
save nginx "$n" '["/usr/sbin/nginx", "-g", "daemon off;"]'
