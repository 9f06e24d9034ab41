#!/usr/bin/env bash
# A release's artefacts, offline and reproducibly (the same commit, toolchain and build machine
# give byte-identical files):
#
#   scripts/release.sh VERSION [OUT_DIR]
#   scripts/release.sh --no-images [--controller-digest sha256:…] [--sim-digest sha256:…] VERSION OUT_DIR
#
# VERSION is semver without a leading "v" and without build metadata (an image tag cannot carry
# "+"), and must already be the version of Cargo.toml's package, the chart's `version` and
# `appVersion`, and have a `## [VERSION]` section in CHANGELOG.md: the script checks and stamps
# nothing. OUT_DIR (default dist/VERSION, ignored by git) must be empty or hold a previous run's
# output (it has SHA256SUMS), whose files are replaced. Written to OUT_DIR:
#
#   ecs-instance-controller-VERSION-linux-amd64.oci.tar   the controller image (OCI archive)
#   ecs-sim-VERSION-linux-amd64.oci.tar                   the ECS simulator image (test-only)
#   ecs-instance-controller-VERSION.tgz                   the chart, image.digest (and
#                                                         simulator.image.digest) set
#   ecs-instance-controller-crds.yaml                     crds/ as one file
#   ecs-instance-controller-deploy-VERSION.tar.gz         deploy/ (no e2e overlays), images pinned
#   ecs-instance-controller-VERSION.spdx.json             SBOM (SPDX 2.3)
#   SHA256SUMS                                            of all the above
#
# The images are built by scripts/build-images.sh (buildah, no registry, no Docker engine) from
# release binaries built here with --locked, offline (CARGO_NET_OFFLINE; `cargo fetch --locked`
# first on a machine without the crates), in their own target directory (RELEASE_TARGET_DIR,
# default target/release-dist) with the cargo home and the checkout remapped in the binaries'
# paths, so where the checkout and ~/.cargo are does not change them. Each image's tag is
# VERSION; its manifest digest (index.json's one manifest) goes into the chart's image.digest and
# the deploy/ pin. amd64 only: arm64 is reported as skipped, with the reason.
#
# Reproducible: every time in the artefacts is SOURCE_DATE_EPOCH (default: the last commit's
# time), archives have sorted entries, owner 0:0 and fixed modes, `helm package`'s tarball (which
# stamps the packaging time) is repacked so, and the SBOM's creation time is that time too. What
# still comes from the build machine: the toolchain, the linker, the shared libraries and CA
# bundle copied into the images (Debian 12 bookworm, the Dockerfile's base) and zlib's output.
#
# --no-images: everything but the binaries and the images (the chart, the CRDs, deploy/, the SBOM
# of the crates, the sums), in seconds; --controller-digest and --sim-digest set the chart's and
# deploy/'s digests (none: by tag only). tests/release.rs runs this mode; the release
# workflow (.github/workflows/release.yml) runs the full one, twice, and compares the sums.
#
# Needs: cargo, buildah, python3 (3.11+), GNU tar, sha256sum; helm from $HELM or
# scripts/build-helm.sh (built once into the cache outside the repository).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
chart_name=ecs-instance-controller

die() { echo "release: $*" >&2; exit 1; }
usage() {
  sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

no_images=0
controller_digest=
sim_digest=
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-images) no_images=1; shift ;;
    --controller-digest) [ $# -ge 2 ] || usage; controller_digest=$2; shift 2 ;;
    --sim-digest) [ $# -ge 2 ] || usage; sim_digest=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "release: unknown option $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ ${#args[@]} -lt 1 ] || [ ${#args[@]} -gt 2 ]; then usage; fi
version=${args[0]}
if [ "$no_images" = 1 ]; then
  [ ${#args[@]} -eq 2 ] || die "--no-images needs an OUT_DIR"
elif [ -n "$controller_digest$sim_digest" ]; then
  die "--controller-digest and --sim-digest go with --no-images (a full run takes the digests from the images it builds)"
fi
out=${args[1]:-$root/dist/$version}
for d in "$controller_digest" "$sim_digest"; do
  [ -z "$d" ] || [[ $d =~ ^sha256:[0-9a-f]{64}$ ]] || die "a digest must be sha256:<64 hex digits>, not '$d'"
done

# --- The version: semver, and already the version everywhere it is written. ---
case $version in
  v*) die "VERSION is '$version': give it without the leading v (the tag $version is VERSION ${version#v})" ;;
  *+*) die "VERSION '$version' has build metadata (+…): image tags cannot carry '+'" ;;
esac
ident='(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)'
[[ $version =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-$ident(\.$ident)*)?$ ]] ||
  die "VERSION '$version' is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 0.1.0 or 0.2.0-rc.1)"

command -v python3 >/dev/null || die "python3 missing"
crate_version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["package"]["version"])' "$root/Cargo.toml")
# Top-level keys of Chart.yaml, quotes removed.
chart_key() { awk -v k="$1" -F': *' '$1 == k { v = $2; gsub(/^["'\'']|["'\'']$/, "", v); print v; exit }' "$root/charts/$chart_name/Chart.yaml"; }
chart_version=$(chart_key version)
app_version=$(chart_key appVersion)
mismatch=()
[ "$crate_version" = "$version" ] || mismatch+=("Cargo.toml [package] version is $crate_version")
[ "$chart_version" = "$version" ] || mismatch+=("charts/$chart_name/Chart.yaml version is $chart_version")
[ "$app_version" = "$version" ] || mismatch+=("charts/$chart_name/Chart.yaml appVersion is $app_version")
grep -q "^## \[$(printf '%s' "$version" | sed 's/[.]/\\./g')\]" "$root/CHANGELOG.md" ||
  mismatch+=("CHANGELOG.md has no section '## [$version] - DATE'")
if [ ${#mismatch[@]} -gt 0 ]; then
  printf 'release: VERSION %s does not match the repository:\n' "$version" >&2
  printf '  - %s\n' "${mismatch[@]}" >&2
  die "set the version in Cargo.toml (then cargo update -w), Chart.yaml (version, appVersion) and CHANGELOG.md first; this script stamps nothing"
fi

# --- Where to write. ---
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  [ -f "$out/SHA256SUMS" ] || die "$out is not empty and holds no earlier release (no SHA256SUMS): give an empty or new OUT_DIR"
  find "$out" -maxdepth 1 -type f -delete
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null) ||
    die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970) to the release commit's time"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, not '$SOURCE_DATE_EPOCH'"
export SOURCE_DATE_EPOCH
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "release: warning: the checkout has uncommitted changes; the artefacts are not those of $(git -C "$root" rev-parse --short HEAD)" >&2
fi
export CARGO_NET_OFFLINE=true

work=$(mktemp -d "${TMPDIR:-/tmp}/ecs-release.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The Python parts: OCI layout reading, the chart's values, deterministic archives, the SBOM.
read -r -d '' PY <<'PYEOF' || true
import datetime, gzip, hashlib, io, json, os, re, subprocess, sys, tarfile, tomllib

EPOCH = int(os.environ["SOURCE_DATE_EPOCH"])

def fail(msg):
    sys.exit("release: " + msg)

def layout_blob(tar, digest):
    algo, hexd = digest.split(":", 1)
    data = tar.extractfile("blobs/%s/%s" % (algo, hexd)).read()
    if hashlib.sha256(data).hexdigest() != hexd:
        fail("%s: blob %s does not match its digest" % (tar.name, digest))
    return data

def digest(archive):
    """The digest of the one image manifest of an OCI archive; every blob it names checked."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifests = index.get("manifests", [])
        if len(manifests) != 1:
            fail("%s: index.json lists %d manifests, expected 1" % (archive, len(manifests)))
        d = manifests[0]["digest"]
        manifest = json.loads(layout_blob(tar, d))
        for blob in [manifest["config"]] + manifest["layers"]:
            layout_blob(tar, blob["digest"])
    print(d)

def image_files(archive):
    """Every regular file of the image's layers, as absolute paths."""
    files = set()
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifest = json.loads(layout_blob(tar, index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(layout_blob(tar, layer["digest"]))) as lt:
                files.update("/" + m.name.lstrip("./") for m in lt.getmembers() if m.isfile())
    return sorted(files)

def set_value(values, path, value, optional=""):
    """Sets the empty string at PATH (dotted, two spaces per level) of a chart's values.yaml to
    VALUE; with OPTIONAL non-empty a missing PATH is no error (nothing is written)."""
    keys = path.split(".")
    lines = open(values).read().split("\n")
    stack, hits = [], []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z0-9_]+):(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if stack == keys:
            hits.append(i)
    if not hits and optional:
        return
    if len(hits) != 1 or not re.match(r'^ *[A-Za-z0-9_]+: ""\s*$', lines[hits[0]]):
        fail('%s: expected one `%s: ""`, found %d' % (values, path, len(hits)))
    i = hits[0]
    lines[i] = '%s%s: "%s"' % (" " * (2 * (len(keys) - 1)), keys[-1], value)
    open(values, "w").write("\n".join(lines))

def _info(name, mode, size, kind=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti

def _write_tgz(out, entries):
    """entries: (name, bytes or None for a directory), in order."""
    with open(out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=EPOCH, compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in entries:
                    if data is None:
                        tar.addfile(_info(name, 0o755, 0, tarfile.DIRTYPE))
                    else:
                        tar.addfile(_info(name, 0o644, len(data)), io.BytesIO(data))

def repack(src, out):
    """A tarball (helm package's) again, its entries in the same order, times and owners fixed."""
    entries = []
    with tarfile.open(src) as tar:
        for m in tar.getmembers():
            if m.isdir():
                entries.append((m.name, None))
            elif m.isfile():
                entries.append((m.name, tar.extractfile(m).read()))
            else:
                fail("%s: unexpected entry %s" % (src, m.name))
    _write_tgz(out, entries)

def pack(directory, prefix, out):
    """A directory as PREFIX/…, sorted."""
    entries = [(prefix, None)]
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        rel = os.path.relpath(base, directory)
        for d in dirs:
            entries.append((os.path.normpath(os.path.join(prefix, rel, d)), None))
        for f in sorted(files):
            with open(os.path.join(base, f), "rb") as fh:
                entries.append((os.path.normpath(os.path.join(prefix, rel, f)), fh.read()))
    entries.sort(key=lambda e: e[0])
    _write_tgz(out, entries)

def spdx_id(kind, name, version):
    return "SPDXRef-%s-%s" % (kind, re.sub(r"[^A-Za-z0-9.-]", "-", "%s-%s" % (name, version)))

def license_expr(lic):
    if not lic:
        return "NOASSERTION"
    # The old "MIT/Apache-2.0" form is an OR.
    return " OR ".join(p.strip() for p in lic.split("/")) if "/" in lic else lic

def sbom(root, version, out, *images):
    """SPDX 2.3: the crates of the released binaries (normal and build dependencies of
    ecs-instance-controller and ecs-sim for the Linux target, as cargo resolves the workspace),
    versions and checksums from Cargo.lock; with images (NAME=ARCHIVE), each image with the Debian
    packages of the files copied into it."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
         "--filter-platform", "x86_64-unknown-linux-gnu", "--manifest-path",
         os.path.join(root, "Cargo.toml")],
        check=True, stdout=subprocess.PIPE).stdout)
    lock = tomllib.load(open(os.path.join(root, "Cargo.lock"), "rb"))
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [p["id"] for p in meta["packages"]
             if p["id"] in meta["workspace_members"] and p["name"] in ("ecs-instance-controller", "ecs-sim")]
    if len(roots) != 2:
        fail("cargo metadata: the workspace lacks ecs-instance-controller or ecs-sim")
    seen, todo, edges = set(roots), list(roots), []
    while todo:
        pid = todo.pop()
        for dep in nodes[pid]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds <= {"dev"}:
                continue
            edges.append((pid, dep["pkg"], None in kinds))
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    packages, ids = [], {}
    for pid in sorted(seen, key=lambda i: (pkgs[i]["name"], pkgs[i]["version"])):
        p = pkgs[pid]
        ids[pid] = spdx_id("Crate", p["name"], p["version"])
        entry = {
            "SPDXID": ids[pid],
            "name": p["name"],
            "versionInfo": p["version"],
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license_expr(p.get("license")),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": "pkg:cargo/%s@%s" % (p["name"], p["version"])}],
        }
        if p.get("description"):
            entry["description"] = " ".join(p["description"].split())
        if pid in meta["workspace_members"]:
            entry["comment"] = "workspace crate of this repository"
        elif p.get("source") is None or not p["source"].startswith("registry+"):
            fail("cargo metadata: %s %s is neither a workspace crate nor from a registry" % (p["name"], p["version"]))
        else:
            sha = checksums.get((p["name"], p["version"]))
            if not sha:
                fail("Cargo.lock has no checksum for %s %s" % (p["name"], p["version"]))
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha}]
        packages.append(entry)
    rels = []
    for a, b, normal in sorted(set(edges), key=lambda e: (ids[e[0]], ids[e[1]], e[2])):
        if normal:
            rels.append({"spdxElementId": ids[a], "relationshipType": "DEPENDS_ON", "relatedSpdxElement": ids[b]})
        else:
            rels.append({"spdxElementId": ids[b], "relationshipType": "BUILD_DEPENDENCY_OF", "relatedSpdxElement": ids[a]})
    described = [ids[r] for r in sorted(roots, key=lambda r: ids[r])]
    debs = {}
    if images:
        described = []
        osr = dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
        distro = "%s-%s" % (osr.get("ID", "").strip('"'), osr.get("VERSION_ID", "").strip('"'))
        for image in images:
            name, archive = image.split("=", 1)
            d = None
            with tarfile.open(archive) as tar:
                d = json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
            iid = spdx_id("Image", name, version)
            described.append(iid)
            packages.append({
                "SPDXID": iid, "name": name, "versionInfo": version,
                "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                "primaryPackagePurpose": "CONTAINER",
                "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "checksums": [{"algorithm": "SHA256", "checksumValue": d.split(":", 1)[1]}],
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": "pkg:oci/%s@%s?tag=%s" % (name, d.replace(":", "%3A"), version)}],
                "comment": "OCI image manifest digest; built by scripts/build-images.sh from scratch",
            })
            crate = next(ids[r] for r in roots if pkgs[r]["name"] == name)
            rels.append({"spdxElementId": iid, "relationshipType": "CONTAINS", "relatedSpdxElement": crate})
            owners = set()
            for f in image_files(archive):
                if f.startswith("/usr/local/bin/"):
                    continue
                if f == "/etc/ssl/certs/ca-certificates.crt":
                    owners.add("ca-certificates")
                    continue
                r = subprocess.run(["dpkg-query", "-S", f], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                if r.returncode != 0:
                    fail("%s: no Debian package owns %s (dpkg-query -S)" % (name, f))
                # "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
                owners.add(r.stdout.splitlines()[0].split(": ")[0].split(",")[0].strip())
            for owner in sorted(owners):
                if owner not in debs:
                    q = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\n", owner],
                                       check=True, stdout=subprocess.PIPE, text=True).stdout.split()
                    pkg, ver, arch = q[0], q[1], q[2]
                    debs[owner] = spdx_id("Deb", pkg, ver)
                    packages.append({
                        "SPDXID": debs[owner], "name": pkg, "versionInfo": ver,
                        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
                        "copyrightText": "NOASSERTION",
                        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                          "referenceLocator": "pkg:deb/%s/%s@%s?arch=%s&distro=%s" % (
                                              osr.get("ID", "debian").strip('"'), pkg, ver, arch, distro)}],
                        "comment": "files copied from the build machine into the image",
                    })
                rels.append({"spdxElementId": iid, "relationshipType": "CONTAINS", "relatedSpdxElement": debs[owner]})
    rels = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": d}
            for d in described] + rels
    created = datetime.datetime.fromtimestamp(EPOCH, datetime.timezone.utc)
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "ecs-instance-controller-%s" % version,
        "documentNamespace": "https://spdx.org/spdxdocs/ecs-instance-controller-%s-%s" % (
            version, hashlib.sha256(json.dumps([packages, rels], sort_keys=True).encode()).hexdigest()[:32]),
        "creationInfo": {
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": ["Tool: ecs-instance-controller scripts/release.sh"],
        },
        "documentDescribes": described,
        "packages": packages,
        "relationships": rels,
    }
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")

cmd, args = sys.argv[1], sys.argv[2:]
{"digest": digest, "set-value": set_value, "repack": repack, "pack": pack, "sbom": sbom}[cmd](*args)
PYEOF
py() { python3 -c "$PY" "$@"; }

echo "release: $version into $out (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git'))" >&2

# --- The binaries and the images. ---
images=()
if [ "$no_images" = 0 ]; then
  target_dir=${RELEASE_TARGET_DIR:-$root/target/release-dist}
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  # The build's paths in the binaries (panic locations of dependencies) independent of where the
  # checkout and the cargo home are; the last matching prefix wins.
  unset CARGO_ENCODED_RUSTFLAGS
  RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$root=/src"
  case $target_dir in "$root"/*) ;; *) RUSTFLAGS+=" --remap-path-prefix=$target_dir=/target" ;; esac
  export RUSTFLAGS
  echo "release: cargo build --release --locked into $target_dir (RUSTFLAGS=$RUSTFLAGS)" >&2
  CARGO_TARGET_DIR=$target_dir cargo build --release --locked --manifest-path "$root/Cargo.toml" \
    -p ecs-instance-controller -p ecs-sim --bin ecs-instance-controller --bin ecs-sim ||
    die "cargo build failed (offline: run \`cargo fetch --locked\` once on a machine without the crates)"

  # arm64: the toolchain here decides; the reason is printed either way.
  installed=$(rustup target list --installed 2>/dev/null | tr '\n' ' ' || true)
  if ! grep -Eq 'aarch64-unknown-linux-(gnu|musl)' <<<"$installed"; then
    echo "release: arm64 skipped: no aarch64 Rust target installed (rustup target list --installed: ${installed:-none})" >&2
  elif ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "release: arm64 skipped: an aarch64 Rust target is installed but no linker for it (aarch64-linux-gnu-gcc)" >&2
  else
    echo "release: arm64 skipped: scripts/build-images.sh copies the binary's shared libraries as this machine's ldd resolves them, which it cannot do for an arm64 binary (needs a static musl build or Debian's arm64 libraries; not built yet)" >&2
  fi

  BIN_DIR=$target_dir/release IMAGE_TAG=$version bash "$root/scripts/build-images.sh" "$work/images" >/dev/null
  for name in ecs-instance-controller ecs-sim; do
    cp "$work/images/$name.oci.tar" "$out/$name-$version-linux-amd64.oci.tar"
    images+=("$name=$out/$name-$version-linux-amd64.oci.tar")
  done
  controller_digest=$(py digest "$out/ecs-instance-controller-$version-linux-amd64.oci.tar")
  sim_digest=$(py digest "$out/ecs-sim-$version-linux-amd64.oci.tar")
  echo "release: images ecs-instance-controller:$version@$controller_digest, ecs-sim:$version@$sim_digest" >&2
fi

# --- The chart: a copy with image.digest set, `helm package`d, repacked deterministically. ---
helm=${HELM:-$(bash "$root/scripts/build-helm.sh")}
[ -x "$helm" ] || die "no helm at '$helm' (scripts/build-helm.sh prints one; or set HELM)"
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data
mkdir -p "$work/chart"
cp -R "$root/charts/$chart_name" "$work/chart/$chart_name"
values=$work/chart/$chart_name/values.yaml
[ -z "$controller_digest" ] || py set-value "$values" image.digest "$controller_digest"
[ -z "$sim_digest" ] || py set-value "$values" simulator.image.digest "$sim_digest" optional
"$helm" lint --strict "$work/chart/$chart_name" >"$work/lint.log" 2>&1 || { cat "$work/lint.log" >&2; die "helm lint failed"; }
"$helm" package "$work/chart/$chart_name" -d "$work/pkg" >/dev/null
py repack "$work/pkg/$chart_name-$version.tgz" "$out/$chart_name-$version.tgz"

# --- The CRDs as one file. ---
{
  echo "# The CustomResourceDefinitions of ecs-instance-controller $version (crds/ of the repository)."
  echo "# Apply before installing or upgrading: kubectl apply --server-side -f $chart_name-crds.yaml"
  for f in "$root"/crds/*.yaml; do
    echo "---"
    sed '/^---[[:space:]]*$/d' "$f"
  done
} >"$out/$chart_name-crds.yaml"

# --- deploy/ without the test-only overlays, the images pinned: the controller in base/, the
# simulator in the component that adds it. ---
cp -R "$root/deploy" "$work/deploy"
rm -rf "$work"/deploy/overlays/e2e*
pin() { # kustomization image digest
  {
    echo
    echo "# The image of release $version (scripts/release.sh). To pull it from your registry, add"
    echo "# to your overlay: images: [{name: $2, newName: REGISTRY/$2}] (tag and digest stay)."
    echo "images:"
    echo "  - name: $2"
    echo "    newTag: \"$version\""
    [ -z "$3" ] || echo "    digest: $3"
  } >>"$1"
}
pin "$work/deploy/base/kustomization.yaml" ecs-instance-controller "$controller_digest"
if [ -f "$work/deploy/components/simulator/kustomization.yaml" ]; then
  pin "$work/deploy/components/simulator/kustomization.yaml" ecs-sim "$sim_digest"
fi
py pack "$work/deploy" deploy "$out/$chart_name-deploy-$version.tar.gz"

# --- The SBOM. ---
py sbom "$root" "$version" "$out/$chart_name-$version.spdx.json" "${images[@]}"

# --- The sums. ---
(cd "$out" && find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | xargs sha256sum) >"$work/SHA256SUMS"
mv "$work/SHA256SUMS" "$out/SHA256SUMS"
echo "release: done:" >&2
find "$out" -maxdepth 1 -type f -printf 'release:   %10s  %f\n' | LC_ALL=C sort -k3 >&2
echo "$out"
