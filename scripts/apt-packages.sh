#!/usr/bin/env bash
# The Debian packages the tests use beyond Go, installed by CI (.ci/run) before `make test`.
#   zbar-tools: zbarimg, the independent QR oracle of the image tests (qrimg, cmd/hcx); never a
#               product dependency. Without it those tests skip only the oracle comparison.
#   chromium, fonts-noto-cjk: the headless browser of the pages' tests (cmd/hcx pages_*_test.go)
#               and the CJK fonts their screenshots need. Without chromium those tests skip
#               loudly, unless HCX_REQUIRE_BROWSER=1 (as .ci/run sets) makes that a failure.
# Best effort: on a machine without apt-get, or without root (or sudo), it says what to install
# and exits 0, so that a developer's `make test` is never blocked by it.
set -euo pipefail
PACKAGES=(zbar-tools chromium fonts-noto-cjk)
if command -v zbarimg >/dev/null && command -v chromium >/dev/null && [ -d /usr/share/fonts/opentype/noto ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "apt-packages: no apt-get here; install ${PACKAGES[*]} by hand for the QR oracle and browser tests" >&2
	exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		SUDO=sudo
	else
		echo "apt-packages: not root and no sudo; run: apt-get install -y ${PACKAGES[*]}" >&2
		exit 0
	fi
fi
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; }; then
	echo "apt-packages: installing ${PACKAGES[*]} failed; the QR oracle comparisons and browser tests will skip" >&2
fi
