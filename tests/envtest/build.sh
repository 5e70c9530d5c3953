#!/usr/bin/env bash
# Builds (or reuses) the control plane the envtest suite runs: kube-apiserver and
# kube-controller-manager of one pinned Kubernetes release, and etcd, all from their Go modules
# through the Go module proxy. Binaries are cached under the user cache keyed by version, so only
# the first run on a machine pays for the build. Prints the bin folder on its last line.
#
#   bash tests/envtest/build.sh            # build what is missing, reuse the rest
#   bash tests/envtest/build.sh --check    # only print the bin folder; exit 1 if not built
#   KUBEREC_ENVTEST_K8S=v1.36.3 bash ...   # another release (KUBEREC_ENVTEST_ETCD: etcd's)
set -euo pipefail

K8S_VERSION=${KUBEREC_ENVTEST_K8S:-v1.37.2}
ETCD_VERSION=${KUBEREC_ENVTEST_ETCD:-v3.7.0}  # the etcd the Kubernetes release itself requires
CACHE=${KUBEREC_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kuberec/envtest}
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:--trimpath}" CGO_ENABLED=0

built() { [[ -x "$BIN/$1" ]]; }
if built kube-apiserver && built kube-controller-manager && built etcd; then
  echo "envtest: reusing $BIN" >&2
  echo "$BIN"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  echo "envtest: no control plane built in $BIN; run: bash tests/envtest/build.sh" >&2
  exit 1
fi
command -v go >/dev/null || { echo "envtest: go is not installed (needed to build the control plane)" >&2; exit 1; }
mkdir -p "$BIN"
start=$SECONDS

# build_in DIR BINARY PACKAGE [LDFLAGS]: a stripped static binary, renamed into place only once
# complete.
build_in() {
  local t=$SECONDS
  (cd "$1" && nice go build -ldflags="-s -w ${4:-}" -o "$BIN/$2.tmp" "$3")
  mv "$BIN/$2.tmp" "$BIN/$2"
  echo "envtest: built $2 in $((SECONDS - t)) s ($(du -h "$BIN/$2" | cut -f1))" >&2
}

if ! built kube-apiserver || ! built kube-controller-manager; then
  # k8s.io/kubernetes replaces its staging modules by ./staging paths that a module download
  # lacks: pin each to the published k8s.io/* release of the same minor (v1.37.2 -> v0.37.2).
  work="$CACHE/build/kubernetes-$K8S_VERSION"
  mkdir -p "$work"
  staging_version="v0.${K8S_VERSION#v1.}"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  {
    echo "module kuberec.io/envtest-build"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod"
  } >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' >"$work/tools.go"
  (cd "$work" && go mod tidy)
  # the version the binaries report (/version, kubectl version), as a release build sets it
  minor=${K8S_VERSION#v1.}
  version="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  version+=" -X k8s.io/component-base/version.gitMajor=1"
  version+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  version+=" -X k8s.io/component-base/version.gitTreeState=clean"
  built kube-apiserver ||
    build_in "$work" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$version"
  built kube-controller-manager ||
    build_in "$work" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager \
      "$version"
fi

if ! built etcd; then
  # etcd: the server module's own main package (server/main.go calls etcdmain.Main).
  work="$CACHE/build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  printf 'module kuberec.io/envtest-etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/tools.go"
  (cd "$work" && go mod tidy)
  build_in "$work" etcd go.etcd.io/etcd/server/v3
fi
echo "envtest: control plane built in $((SECONDS - start)) s into $BIN" >&2
echo "$BIN"
