#!/usr/bin/env bash
# Build KenLM's `lmplz` and `build_binary` from the C++ sources in the kenlm sdist on PyPI.
#
# No wheel ships these two tools (the `kenlm` / `flashlight-text` wheels only *query* LMs),
# so `w2v2-lm build` needs them compiled once. Idempotent: if $DEST/lmplz already runs,
# nothing is done. Needs cmake, a C++ compiler and Boost development packages (installed with
# apt-get when missing and we are root). Usage:
#     bash tools/build_kenlm.sh            # -> tools/kenlm/bin/{lmplz,build_binary}
#     KENLM_DEST=/opt/kenlm/bin bash tools/build_kenlm.sh
# Env: KENLM_VERSION (default 0.3.0), KENLM_MAX_ORDER (default 6, compiled max n-gram order),
#      KENLM_JOBS (default 2), PYTHON (python with pip, default: .venv/bin/python or python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${KENLM_DEST:-$ROOT/tools/kenlm/bin}"
VERSION="${KENLM_VERSION:-0.3.0}"
MAX_ORDER="${KENLM_MAX_ORDER:-6}"
JOBS="${KENLM_JOBS:-2}"
WORK="$ROOT/tools/kenlm/build"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

works() {  # both tools present and lmplz answers --help (exit status 0 or 1 depending on version)
  [[ -x "$DEST/lmplz" && -x "$DEST/build_binary" ]] || return 1
  local help
  help="$("$DEST/lmplz" --help 2>&1 || true)"  # captured first: grep -q would SIGPIPE lmplz under pipefail
  [[ "$help" == *"--order"* ]] || return 1
}

if works; then
  echo "kenlm: $DEST/lmplz and build_binary already built; nothing to do"
  exit 0
fi

for tool in cmake make g++; do
  if ! command -v "$tool" >/dev/null; then
    echo "kenlm: '$tool' is missing: install it (Debian/Ubuntu: apt-get install cmake build-essential)" >&2
    exit 2
  fi
done

APT_PKGS=(libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
          zlib1g-dev libbz2-dev liblzma-dev)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "+ apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "kenlm: missing build packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and rerun" >&2
    exit 2
  fi
fi

mkdir -p "$WORK" "$DEST"
cd "$WORK"
if [[ ! -d "kenlm-$VERSION" ]]; then
  echo "+ pip download kenlm==$VERSION (source distribution)"
  rm -f kenlm-"$VERSION".tar.gz
  # --no-binary kenlm (not :all:): only kenlm must be the sdist; its build requirements
  # (setuptools, cmake) may come as wheels, else pip compiles CMake itself (~10 min).
  "$PYTHON" -m pip download -q --no-deps --no-binary kenlm "kenlm==$VERSION" -d "$WORK"
  tar xzf "kenlm-$VERSION.tar.gz"
fi
SRC="$WORK/kenlm-$VERSION"
mkdir -p "$SRC/build"
cd "$SRC/build"
echo "+ cmake (KENLM_MAX_ORDER=$MAX_ORDER)"
cmake .. -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER="$MAX_ORDER" -DCOMPILE_TESTS=OFF >cmake.log 2>&1 \
  || { tail -30 cmake.log >&2; echo "kenlm: cmake failed (log: $SRC/build/cmake.log)" >&2; exit 1; }
echo "+ make -j$JOBS lmplz build_binary (a few minutes)"
make -j"$JOBS" lmplz build_binary >make.log 2>&1 \
  || { tail -30 make.log >&2; echo "kenlm: make failed (log: $SRC/build/make.log)" >&2; exit 1; }
# Install to a temp name then rename, so an interrupted copy never looks like a working build.
for tool in lmplz build_binary; do
  cp "bin/$tool" "$DEST/.$tool.tmp" && mv -f "$DEST/.$tool.tmp" "$DEST/$tool"
done
echo "$MAX_ORDER" >"$DEST/MAX_ORDER"
works || { echo "kenlm: built tools do not run" >&2; exit 1; }
echo "kenlm: installed $DEST/lmplz and $DEST/build_binary (max order $MAX_ORDER)"
