#!/usr/bin/env bash
# Checks systemd/switchyard.service with systemd's own tools: `systemd-analyze verify` (with the
# built binary standing in for /usr/bin/switchyard) and the offline security exposure score,
# which must be 2.0 or lower. Skips (exit 77) where systemd-analyze is not installed.
set -euo pipefail
unit=$1 binary=$2 config=$3
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/bin/switchyard|$binary|g; s|/etc/switchyard/routes.yaml|$config|g" "$unit" \
  > "$work/switchyard.service"
out=$(systemd-analyze verify "$work/switchyard.service" 2>&1 || true)
# Offline verification cannot resolve the network-online target on a build machine; any other
# complaint is a real problem with the unit.
problems=$(grep -v -e "network-online.target" -e "^$" <<<"$out" || true)
if [[ -n $problems ]]; then
  echo "systemd-analyze verify reported:"; echo "$problems"; exit 1
fi
score=$(systemd-analyze security --offline=yes "$work/switchyard.service" 2>&1 |
  awk '/Overall exposure level/{print $(NF-2)}')
echo "exposure: $score"
awk -v s="$score" 'BEGIN{ exit !(s != "" && s + 0 <= 2.0) }' || { echo "exposure $score > 2.0"; exit 1; }
# The config the unit installs must pass the daemon's own check.
"$binary" check -c "$config"
