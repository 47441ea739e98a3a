#!/usr/bin/env bash
# Builds llama.cpp's own HTTP server (`llama-server`) from the llama.cpp source that node-llama-cpp
# ships as a git bundle, so tests and `npm run cloud:check` can talk to a real llama.cpp server with no
# download. Idempotent: a stamp records the bundle's commit and the build flags; a second run with the
# same bundle and flags does nothing.
#
#   npm run llama-server:build            # -> models/.scratch/engines/llama.cpp/bin/llama-server
#
# Environment:
#   TANDEM_ENGINES_DIR   cache directory (default <repo>/models/.scratch/engines, git-ignored)
#   LLAMA_SERVER_JOBS    parallel compile jobs (default 2: the development and CI machines have 2 cores)
#   LLAMA_SERVER_CMAKE_FLAGS  extra cmake flags, e.g. "-DGGML_CUDA=ON" on a GPU box (part of the stamp)
#
# Takes about 6 minutes of 2 cores (12 CPU-minutes); 24 minutes on a machine busy with other work.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUNDLE="$ROOT/node_modules/node-llama-cpp/llama/gitRelease.bundle"
ENGINES="${TANDEM_ENGINES_DIR:-$ROOT/models/.scratch/engines}"
DIR="$ENGINES/llama.cpp"
JOBS="${LLAMA_SERVER_JOBS:-2}"

for tool in git cmake c++; do
  command -v "$tool" >/dev/null || { echo "llama-server:build: '$tool' is not installed (needs git, cmake and a C++ compiler)" >&2; exit 1; }
done
[ -f "$BUNDLE" ] || { echo "llama-server:build: $BUNDLE not found; run 'npm ci' first" >&2; exit 1; }

COMMIT="$(git bundle list-heads "$BUNDLE" | awk '$2 == "HEAD" { print $1 }')"
[ -n "$COMMIT" ] || { echo "llama-server:build: $BUNDLE has no HEAD" >&2; exit 1; }

# Static libraries: the binary is copied out of the build tree and must not depend on libllama.so
# files that live there. Release: a debug llama.cpp is 10x slower.
FLAGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF)
# word splitting intended: several flags in one variable
# shellcheck disable=SC2206
[ -n "${LLAMA_SERVER_CMAKE_FLAGS:-}" ] && FLAGS+=(${LLAMA_SERVER_CMAKE_FLAGS})
KEY="commit=$COMMIT flags=${FLAGS[*]}"
STAMP="$DIR/bin/build.stamp"
BIN="$DIR/bin/llama-server"

mkdir -p "$DIR"
# Two runs at once (e.g. two test workers, or CI and a developer) would build into the same tree.
exec 9>"$DIR/.lock"
if command -v flock >/dev/null; then flock 9; fi

if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  echo "llama-server is up to date: $BIN (llama.cpp ${COMMIT:0:12})"
  exit 0
fi

start=$(date +%s)
if [ ! -d "$DIR/src/.git" ] || [ "$(git -C "$DIR/src" rev-parse HEAD 2>/dev/null)" != "$COMMIT" ]; then
  rm -rf "$DIR/src" "$DIR/build"
  echo "cloning llama.cpp ${COMMIT:0:12} from node-llama-cpp's bundle into $DIR/src"
  git -c advice.detachedHead=false clone --quiet "$BUNDLE" "$DIR/src"
  git -C "$DIR/src" -c advice.detachedHead=false checkout --quiet "$COMMIT"
fi

echo "building llama-server with $JOBS jobs (about 6 minutes on 2 idle cores)"
cmake -S "$DIR/src" -B "$DIR/build" "${FLAGS[@]}" >"$DIR/cmake-configure.log" 2>&1 ||
  { tail -n 40 "$DIR/cmake-configure.log" >&2; echo "llama-server:build: cmake configure failed (log: $DIR/cmake-configure.log)" >&2; exit 1; }
cmake --build "$DIR/build" --target llama-server -j "$JOBS" >"$DIR/cmake-build.log" 2>&1 ||
  { tail -n 40 "$DIR/cmake-build.log" >&2; echo "llama-server:build: build failed (log: $DIR/cmake-build.log)" >&2; exit 1; }

mkdir -p "$DIR/bin"
# copy then rename: a test that finds the binary never sees a half-written file
cp "$DIR/build/bin/llama-server" "$DIR/bin/llama-server.tmp"
mv -f "$DIR/bin/llama-server.tmp" "$BIN"
"$BIN" --version >/dev/null 2>&1 || { echo "llama-server:build: the built binary does not run" >&2; exit 1; }
echo "$KEY" >"$STAMP"
echo "built $BIN (llama.cpp ${COMMIT:0:12}) in $(( $(date +%s) - start )) s"
