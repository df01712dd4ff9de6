#!/usr/bin/env bash
# `make package`: from this checkout, offline once `make deps` has installed cargo-deb, builds
#   target/debian/registry-up_VERSION_ARCH.deb                     (cargo-deb, metadata in Cargo.toml)
#   target/package/registry-up-VERSION-MACHINE-linux.tar.gz        (+ .sha256 beside it, `sha256sum -c` form)
# Both hold the same stripped binary, man pages and completions generated from the clap definitions by
# that binary, and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${REGISTRY_UP_TOOLS:-$HOME/.cache/registry-up-tools}
[ -x "$tools/bin/cargo-deb" ] || { echo "packaging/build.sh: cargo-deb is missing from $tools: run make deps" >&2; exit 2; }
cargo=${CARGO:-cargo}
# The asset paths in Cargo.toml and below are under ./target.
export CARGO_TARGET_DIR=target
# Times in both archives are the last commit's, so two builds of one commit give the same bytes.
SOURCE_DATE_EPOCH=$(git -c safe.directory='*' log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

"$cargo" build --release --locked
bin=target/release/registry-up
version=$("$bin" --version | cut -d' ' -f2)
assets=target/package/assets
rm -rf target/package target/debian
mkdir -p "$assets/completions"
"$bin" man --out "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/registry-up.bash"
"$bin" completions zsh >"$assets/completions/_registry-up"
"$bin" completions fish >"$assets/completions/registry-up.fish"
gzip -9nc packaging/changelog >"$assets/changelog.gz"

PATH="$tools/bin:$PATH" "$cargo" deb --no-build --no-strip --locked --output target/debian/ >/dev/null
deb=$(ls target/debian/registry-up_*.deb)

# The tarball: one folder, its members' checksums inside, the archive's own beside it. Member order,
# owners and times fixed, so two builds of one commit give the same bytes.
name=registry-up-$version-$(uname -m)-linux
stage=target/package/$name
mkdir -p "$stage/man/man1" "$stage/completions"
cp "$bin" README.md "$stage/"
cp "$assets"/man/*.1.gz "$stage/man/man1/"
cp "$assets"/completions/* "$stage/completions/"
(cd "$stage" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
tar --sort=name --owner=0 --group=0 --numeric-owner --mode=u+rw,go=rX,go-w --mtime="@$SOURCE_DATE_EPOCH" \
  -C target/package -cf - "$name" |
  gzip -9n >"target/package/$name.tar.gz"
(cd target/package && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
rm -rf "$stage"
echo "$deb"
echo "target/package/$name.tar.gz"
