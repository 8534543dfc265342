#!/bin/sh
# Fetches the web page's one third-party script, tus-js-client's browser build, with npm's own
# client (`npm pack`, whatever registry npm is configured with), checks it against the pinned
# sha256 and copies it and its licence into apps/web/static/web/vendor/. The copy is committed, so
# the page needs nothing at run time; this re-creates it (or checks it) on any machine with npm.
set -eu
VERSION=4.3.1
TARBALL_SHA256=919f46808b2c689be9214df5c0f21879bee4a4599b34e212ada8f14de1db9bc0
BUILD_SHA256=8cbb1b63fccc3bba0ae73ad1deb160ce046c3750851d0c3e94921ae3ef070eb8
DEST="$(cd "$(dirname "$0")/.." && pwd)/apps/web/static/web/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "tus-js-client@$VERSION" >/dev/null
echo "$TARBALL_SHA256  tus-js-client-$VERSION.tgz" | sha256sum -c --quiet
tar xzf "tus-js-client-$VERSION.tgz" package/dist/tus.min.js package/LICENSE
echo "$BUILD_SHA256  package/dist/tus.min.js" | sha256sum -c --quiet
mkdir -p "$DEST"
cp package/dist/tus.min.js "$DEST/tus.min.js"
cp package/LICENSE "$DEST/tus-js-client.LICENSE"
echo "tus-js-client $VERSION -> $DEST (sha256 $BUILD_SHA256)"
