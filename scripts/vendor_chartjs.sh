#!/usr/bin/env bash
# Refresh the vendored Chart.js (web/static/vendor/) from the npm registry: the dashboard loads it
# from this host, never from a CDN, so the product works on a closed network.
#   bash scripts/vendor_chartjs.sh           # the newest release
#   bash scripts/vendor_chartjs.sh 4.6.2     # a given version
# Needs npm (only here, to fetch the package; nothing of npm runs in the product).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-$(npm view chart.js version)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@${version}" >/dev/null && tar xzf "chart.js-${version}.tgz")
target=web/static/vendor
mkdir -p "$target"
# The UMD build (defines window.Chart); its source map comment is dropped: the map is not shipped.
sed '/^\/\/# sourceMappingURL=/d' "$work/package/dist/chart.umd.js" > "$target/chart.umd.js"
cp "$work/package/LICENSE.md" "$target/LICENSE.md"
license="$(node -p "require('$work/package/package.json').license")"
printf 'chart.js %s (%s licence, see LICENSE.md), from the npm registry: dist/chart.umd.js\nrefreshed by scripts/vendor_chartjs.sh\n' \
    "$version" "$license" > "$target/VERSION"
echo "vendor: chart.js ${version} in ${target}/chart.umd.js"
