#!/usr/bin/env bash
# The installed package, as a user gets it (issue 26 item 8). CI installs editable for the test suite; this checks
# what `pip install scoresde-*.whl` gives instead: it builds the wheel, installs it NOT editable with the pinned torch
# into a fresh venv, and from a folder outside the checkout runs
#   - the wheel's contents: every file git tracks under src/scoresde, the `scoresde` console script;
#   - the presets: `scoresde configs` from the wheel prints what the checkout's source prints;
#   - the digits data (scikit-learn's copy, no download): 1797 images at 16x16, and `scoresde train` on them;
#   - `scoresde demo --toy`, its exact-score likelihood checked against the mixture's true NLL;
#   - README.md's first Python example (.ci/readme_example.py: its `# prints:` line, scoresde from site-packages).
# Ends with "wheel-check: N passed, M failed"; exits 1 on the first failure (later checks depend on earlier ones).
# Usage: bash .ci/wheel_check.sh   (or `make wheel-check`). Environment: PYTHON (default python3), TORCH_PIN (default:
# the Makefile's), WHEEL_CHECK_KEEP=1 keeps the temporary folder. Takes ~5 min here (the toy demo ~3 of them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_PIN=${TORCH_PIN:-$(sed -n 's/^TORCH_PIN ?= //p' "$ROOT/Makefile")}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scoresde-wheel-check.XXXXXX")
OUTSIDE="$WORK/outside"   # the user's folder: no checkout, no src/ on the path
mkdir -p "$OUTSIDE" "$WORK/dist"
VENV="$WORK/venv"
passed=0
current="start"

finish() {
    local rc=$?
    if [[ -z "${WHEEL_CHECK_KEEP:-}" ]]; then rm -rf "$WORK"; else echo "wheel-check: kept $WORK"; fi
    if [[ $rc -ne 0 ]]; then
        echo "wheel-check: FAILED: $current (exit $rc; its output is above)"
        echo "wheel-check: $passed passed, 1 failed"
    fi
}
trap finish EXIT

check() {  # check NAME FUNCTION: run it under `set -e` (not as an `if` condition, which would disable -e), timed
    current=$1
    local start=$SECONDS
    echo "::: wheel-check: $1"
    "$2"
    passed=$((passed + 1))
    echo "::: wheel-check: $1: ok ($((SECONDS - start)) s)"
}

build_wheel() {
    # from a copy of the tracked files: a build/ left in the checkout could carry stale modules into the wheel
    mkdir -p "$WORK/tree"
    git -C "$ROOT" ls-files -z -- pyproject.toml README.md src | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/tree")
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$WORK/tree"
    ls "$WORK"/dist/scoresde-*.whl
}

wheel_contents() {  # every tracked file of the package (modules, presets, any data file) is in the wheel
    git -C "$ROOT" ls-files -- src/scoresde | "$PYTHON" -c '
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/scoresde-*.whl")[0]
names = set(zipfile.ZipFile(wheel).namelist())
tracked = [line.strip()[len("src/"):] for line in sys.stdin if line.strip()]
missing = [name for name in tracked if name not in names]
entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
script = entry and "scoresde = scoresde.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
presets = [n for n in tracked if n.startswith("scoresde/config/presets/")]
print(f"{wheel}: {len(names)} files; {len(tracked)} tracked package files, {len(presets)} preset modules")
if not tracked or not presets:
    sys.exit("git lists no package files: run this from a git checkout")
if missing:
    sys.exit("not in the wheel (add them to [tool.setuptools.package-data] in pyproject.toml): " + ", ".join(missing))
if not script:
    sys.exit("the wheel declares no `scoresde = scoresde.cli:main` console script")
' "$WORK/dist"
}

quiet_pip() {  # drop pip's line per package that a local index (extra-index-url file://...) does not hold
    grep -v "is ignored: it is neither a file nor a directory" || true
}

install_wheel() {
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086  # TORCH_PIN is a list of requirements
    "$VENV/bin/python" -m pip install --quiet $TORCH_PIN 2>&1 | quiet_pip
    "$VENV/bin/python" -m pip install --quiet "$WORK"/dist/scoresde-*.whl 2>&1 | quiet_pip
    local shown  # (not `pip show | grep -q`: grep's early exit breaks pip's pipe, which pipefail reports)
    shown=$("$VENV/bin/python" -m pip show --files scoresde)
    grep "scoresde/cli/__init__.py" <<< "$shown"
    if grep "^Editable project location" <<< "$shown"; then echo "scoresde was installed editable"; return 1; fi
}

in_outside() { (cd "$OUTSIDE" && env -u PYTHONPATH PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 PATH="$VENV/bin:$PATH" "$@"); }

cli_and_presets() {
    in_outside scoresde --version
    in_outside scoresde configs > "$WORK/configs.wheel"
    (cd "$ROOT" && PYTHONPATH="$ROOT/src" "$VENV/bin/python" -m scoresde configs) > "$WORK/configs.source"
    diff -u "$WORK/configs.source" "$WORK/configs.wheel"
    grep -q "digits/vp_ddpmpp" "$WORK/configs.wheel"
    echo "$(wc -l < "$WORK/configs.wheel") lines of presets, the same as the checkout's"
}

digits_data() {
    in_outside python -c '
from scoresde.data import load_digits16
train, test = load_digits16("train"), load_digits16("test")
print("digits: train", tuple(train.images.shape), "test", tuple(test.images.shape))
assert train.image_shape == test.image_shape == (1, 16, 16), "digits are not 1x16x16"
assert len(train) + len(test) == 1797, "scikit-learn ships 1797 digits"
assert sorted(set(train.labels.tolist())) == list(range(10)), "the training digits lack a class"
'
    # what README's example loads: a run folder written by `scoresde train` (2 steps; no snapshot grid: speed)
    in_outside scoresde train --config digits/vp_ddpmpp --workdir runs/digits \
        --set training.n_iters=2 --set training.snapshot_sampling=false
}

toy_demo() {
    in_outside scoresde demo --toy --quiet --out toy
    in_outside python -c '
import json, math
m = json.load(open("toy/metrics.json"))["likelihood"]
true, exact, learned = m["true_nll_per_dim"], m["exact_nll_per_dim"], m["learned_nll_per_dim"]
gap = abs(exact - true)
print(f"toy NLL per dim: true {true:.4f}, exact-score ODE {exact:.4f} (gap {gap:.1e}), learned {learned:.4f}")
assert math.isfinite(learned), "the learned NLL is not finite"
assert gap < 1e-2, "the exact-score likelihood misses the true NLL of the mixture"
'
    test -s "$OUTSIDE/toy/samples.png"
}

readme_example() {
    in_outside python "$ROOT/.ci/readme_example.py" "$ROOT/README.md"
}

echo "wheel-check: python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'), $TORCH_PIN, in $WORK"
check "build the wheel" build_wheel
check "the wheel holds every package file and the console script" wheel_contents
check "install it (not editable) with $TORCH_PIN in a fresh venv" install_wheel
check "scoresde --version and the presets, outside the checkout" cli_and_presets
check "the digits data and scoresde train on it" digits_data
check "scoresde demo --toy" toy_demo
check "README's first Python example" readme_example
echo "wheel-check: $passed passed, 0 failed"
