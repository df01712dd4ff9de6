#!/usr/bin/env bash
# Builds offline stand-ins for the official `registry` (3.x and 2.x layouts) and `nginx:alpine` images from this host's Debian
# packages (docker-registry, nginx), and saves them as OCI archives: the same air-gapped path users take
# with `registry-up --image-archive`. No network is used.
#
#   tests/images/build.sh OUT_DIR [TAG]
#
# Writes OUT_DIR/registry.tar (3.x layout), OUT_DIR/registry-2x.tar (2.x layout) and OUT_DIR/nginx.tar,
# holding localhost/registry-up-test/{registry,registry-2x,nginx}:TAG.
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

# save NAME ROOT ENTRYPOINT_JSON [CMD_JSON]
save() {
  local name=$1 root=$2 entrypoint=$3 cmd=${4:-} ref="$prefix/$1:$tag"
  local changes=(--change "ENTRYPOINT $entrypoint")
  [ -z "$cmd" ] || changes+=(--change "CMD $cmd")
  tar --numeric-owner -C "$root" -c . |
    podman import -q "${changes[@]}" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$ref" >/dev/null
  rm -f "$out/$name.tar.tmp"
  podman save -q --format oci-archive -o "$out/$name.tar.tmp" "$ref"
  mv "$out/$name.tar.tmp" "$out/$name.tar"
  # Tolerate a tag still used by a running test pod: the archive is what tests load.
  podman rmi "$ref" >/dev/null 2>&1 || true
  echo "built $ref -> $out/$name.tar ($(du -h "$out/$name.tar" | cut -f1))"
}

# Both official registry layouts, from the same Debian binary. Each carries a permissive config of its
# own at the path its layout reads, as the official images do: an appliance that ran the image's config
# instead of registry-up's would answer without auth, which is what the tests must be able to catch.
registry_root() {
  local r=$1
  base_files "$r"
  copy_binary "$r" /usr/bin/docker-registry /bin/registry
  # Both official layouts are Alpine images with a shell, which the pod uses to set the registry's umask.
  copy_binary "$r" /bin/dash /bin/sh
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
  mkdir -p "$r/var/lib/registry"
}
dev_config() {
  cat <<'YML'
version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
storage:
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  debug:
    addr: :5001
    prometheus:
      enabled: true
      path: /metrics
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YML
}

# --- registry (3.x layout, the official image today): ENTRYPOINT ["registry"],
# CMD ["serve", "/etc/distribution/config.yml"]. Like the 3.0 images, no OTEL_TRACES_EXPORTER is set.
r="$work/registry"
registry_root "$r"
mkdir -p "$r/etc/distribution"
dev_config >"$r/etc/distribution/config.yml"
save registry "$r" '["registry"]' '["serve", "/etc/distribution/config.yml"]'

# --- registry-2x (2.x layout): ENTRYPOINT ["/entrypoint.sh"], CMD ["/etc/docker/registry/config.yml"];
# the script turns `serve PATH` or a bare *.yml path into `registry serve PATH`, as the 2.x image's does.
r="$work/registry-2x"
registry_root "$r"
mkdir -p "$r/etc/docker/registry"
dev_config >"$r/etc/docker/registry/config.yml"
cat >"$r/entrypoint.sh" <<'SH'
#!/bin/sh
set -e
case "$1" in
  *.yml | *.yaml) set -- registry serve "$@" ;;
  serve | garbage-collect | help | -*) set -- registry "$@" ;;
esac
exec "$@"
SH
chmod 0755 "$r/entrypoint.sh"
save registry-2x "$r" '["/entrypoint.sh"]' '["/etc/docker/registry/config.yml"]'

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
