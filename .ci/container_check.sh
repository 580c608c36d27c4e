#!/usr/bin/env bash
# The container image on a machine like CI's (issue 26 item 9): set up Podman, make a Debian base image with
# debootstrap (no image registry is reachable here), build the project's Dockerfile on it and run
# `scoresde demo --toy` in the image. Prints how long each step took.
#
# Usage: bash .ci/container_check.sh [setup|base|build|run|all]   (default all; each step does the ones before it
# that are not done yet, so it is safe to run again)
#   setup  install podman, runc and debootstrap with apt-get when missing (as root); containers.conf for this kind of
#          machine: `default_ulimits = []` (the sandbox refuses to raise rlimits) and the runc runtime
#   base   $BASE_IMAGE (default localhost/scoresde-debian-base:bookworm), from `debootstrap --variant=minbase bookworm`
#          and the Debian mirror apt uses here (/etc/apt/sources.list*), imported with `podman import`
#   build  $IMAGE (default localhost/scoresde:latest) from ./Dockerfile, --network host, with this machine's pip
#          configuration (`pip config list`: files and PIP_* variables, merged into one file) and the local paths it
#          names mounted read-only for the build only: nothing of them is in the image
#          (then removes the untagged images an earlier build of this Dockerfile left: each is several GB)
#   run    `scoresde demo --toy` in the image as its non-root user, no network, OUT ($CONTAINER_OUT, default a temp
#          folder) mounted as /runs; checks the demo's exact-score likelihood against the mixture's true NLL
set -Eeuo pipefail
trap 'echo "container-check: FAILED at line $LINENO: ${BASH_COMMAND%%$'"'"'\n'"'"'*}" >&2' ERR
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STEP=${1:-all}
BASE_IMAGE=${BASE_IMAGE:-localhost/scoresde-debian-base:bookworm}
IMAGE=${IMAGE:-localhost/scoresde:latest}
TORCH_PIN=${TORCH_PIN:-$(sed -n 's/^TORCH_PIN ?= //p' "$ROOT/Makefile")}
PODMAN=(podman --runtime runc)
CONF=/etc/containers/containers.conf

say() { echo "container-check: $*"; }
timed() {  # timed NAME COMMAND...
    local start=$SECONDS
    "${@:2}"
    say "$1 took $((SECONDS - start)) s"
}

conf_line() {  # conf_line SECTION KEY VALUE: `KEY = VALUE` in $CONF's [SECTION], replacing another value of KEY
    local section=$1 key=$2 value=$3
    grep -qs "^$key *= *${value//[/\\[}\$" "$CONF" && return
    [[ $(id -u) -eq 0 ]] || { say "$CONF needs '$key = $value' in [$section]: run as root"; return 1; }
    mkdir -p "$(dirname "$CONF")"
    if grep -qs "^$key *=" "$CONF"; then
        sed -i "s/^$key *=.*/$key = $value/" "$CONF"
    elif grep -qs "^\[$section\]" "$CONF"; then
        sed -i "s/^\[$section\]/[$section]\n$key = $value/" "$CONF"
    else
        printf '\n[%s]\n%s = %s\n' "$section" "$key" "$value" >> "$CONF"
    fi
}

setup() {
    local missing=()
    for tool in podman runc debootstrap; do command -v "$tool" > /dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        [[ $(id -u) -eq 0 ]] || { say "needs ${missing[*]}: run as root, or apt-get install them"; return 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap > /dev/null
    fi
    conf_line containers default_ulimits '[]'
    conf_line engine runtime '"runc"'
    podman --version
}

debian_mirror() {  # the first Debian archive (not the security one) of apt's sources
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
        | grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' '
}

base() {
    if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then say "base image $BASE_IMAGE exists"; return; fi
    local mirror dir
    mirror=$(debian_mirror)
    [[ -n "$mirror" ]] || { say "no Debian mirror in /etc/apt/sources.list*"; return 1; }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/scoresde-debian.XXXXXX")
    say "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$dir" "$mirror" > "$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log"; rm -rf "$dir" "$dir.log"; return 1; }
    tar -C "$dir" -c . | "${PODMAN[@]}" import - "$BASE_IMAGE"
    rm -rf "$dir" "$dir.log"
}

pip_build_options() {  # prints podman build options: this machine's pip configuration as a build-time volume
    local conf_dir=$1
    python3 - "$conf_dir" <<'PY'
import os, re, subprocess, sys
# `pip config list` merges every configuration file and PIP_* variable (":env:" keys, which override files)
rows = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
sections = {}
for row in rows.splitlines():
    m = re.match(r"^(?P<section>[^.]*)\.(?P<key>[^=]+)='(?P<value>.*)'$", row)
    if m:
        section = "global" if m["section"] == ":env:" else m["section"]
        sections.setdefault(section, {})[m["key"]] = m["value"]
host = "/run/host-pip"   # where the build sees this machine's files
mounts = set()
def relocate(match):
    # a local path: mount its folder (a file's folder: a file mount would leave an empty file in the image; an
    # index's parent when it ends in /simple: its pages link to ../../files)
    path = match["path"]
    if not os.path.exists(path):
        return match[0]
    folder = path.rstrip("/") if os.path.isdir(path) else os.path.dirname(path)
    mounts.add(os.path.dirname(folder) if folder.endswith("/simple") else folder)
    return (match["scheme"] or "") + host + path
lines = []
for section, values in sections.items():
    lines.append(f"[{section}]")
    for key, value in values.items():
        lines.append(f"{key} = " + re.sub(r"(?P<scheme>file://)?(?P<path>/[^\s]+)", relocate, value))
with open(os.path.join(sys.argv[1], "pip.conf"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"--volume={sys.argv[1]}:{host}/conf:ro")
print(f"--build-arg=PIP_CONFIG_FILE={host}/conf/pip.conf")
for path in sorted(mounts):
    print(f"--volume={path}:{host}{path}:ro")
PY
}

build() {
    "${PODMAN[@]}" image exists "$BASE_IMAGE" || base
    local conf_dir options=()
    conf_dir=$(mktemp -d "${TMPDIR:-/tmp}/scoresde-pipconf.XXXXXX")
    pip_build_options "$conf_dir" > "$conf_dir/options"
    mapfile -t options < "$conf_dir/options"
    say "build $IMAGE on $BASE_IMAGE with $TORCH_PIN; pip configuration for the build:"
    sed 's/^/    /' "$conf_dir/pip.conf"
    "${PODMAN[@]}" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_PIN=$TORCH_PIN" \
        "${options[@]}" --tag "$IMAGE" --file "$ROOT/Dockerfile" "$ROOT" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } \
        || { rm -rf "$conf_dir"; return 1; }
    rm -rf "$conf_dir"
    # the images this Dockerfile made before (untagged now: an older $IMAGE, an older wheel stage), not others'
    "${PODMAN[@]}" image prune --force --filter label=org.opencontainers.image.title=scoresde > /dev/null
    "${PODMAN[@]}" image ls "$IMAGE"
}

run_demo() {
    "${PODMAN[@]}" image exists "$IMAGE" || build
    local out=${CONTAINER_OUT:-}
    [[ -n "$out" ]] || out=$(mktemp -d "${TMPDIR:-/tmp}/scoresde-container-out.XXXXXX")
    mkdir -p "$out"
    # :U gives the folder to the image's user (uid 1000) for the run; --network none: the demo needs no download.
    # One thread: the toy's networks are tiny, and two spinning threads on a busy 2-core machine made it 6x slower
    "${PODMAN[@]}" run --rm --network none --env OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" --volume "$out:/runs:U" \
        "$IMAGE" demo --toy --quiet --out /runs/toy
    python3 - "$out/toy/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["likelihood"]
true, exact = m["true_nll_per_dim"], m["exact_nll_per_dim"]
print(f"container-check: toy NLL per dim: true {true:.4f}, exact-score ODE {exact:.4f}")
assert abs(exact - true) < 1e-2, "the exact-score likelihood misses the true NLL of the mixture"
PY
    say "demo output in $out"
}

case "$STEP" in
    setup) timed "setup" setup ;;
    base) timed "setup" setup; timed "base image" base ;;
    build) timed "setup" setup; timed "image build" build ;;
    run) timed "setup" setup; timed "toy demo in the image" run_demo ;;
    all) timed "setup" setup; timed "base image" base; timed "image build" build; timed "toy demo in the image" run_demo ;;
    *) say "unknown step '$STEP': setup, base, build, run or all"; exit 2 ;;
esac
say "ok ($STEP)"
