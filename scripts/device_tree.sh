#!/usr/bin/env bash
# Keep what travels to the device machine under its 64 MiB limit. The device tool copies the
# tracked files and the untracked ones git does not ignore, plus the carried paths; the published
# weights/ alone are about 130 MB, and no GPU run needs them. Use it around a device call:
#
#   bash scripts/device_tree.sh slim [CARRY...]   # weights/ untracked (a staged removal, the files
#                                                 # stay on disk) and ignored; prints what travels
#   run(command=..., carry=[CARRY...])
#   bash scripts/device_tree.sh restore           # weights/ tracked again, nothing else changed
#   bash scripts/device_tree.sh size [CARRY...]   # what would travel now, in bytes
#
# Do not commit while slim: the commit would delete weights/.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=.git/info/exclude
limit=$((64 * 1024 * 1024))

size() {  # tracked + untracked-not-ignored files, plus the carried paths
  local bytes
  bytes=$( { git ls-files -z --cached --others --exclude-standard; \
             [ $# -gt 0 ] && find "$@" -type f -print0; } \
           | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
  echo "device_tree: $bytes bytes would travel (limit $limit)${*:+ with carry: $*}"
  [ "$bytes" -le "$limit" ] || { echo "device_tree: over the limit; carry less" >&2; return 1; }
}

case "${1:-}" in
  slim)
    shift
    mkdir -p "$(dirname "$exclude")"
    grep -qx '/weights/' "$exclude" 2>/dev/null || echo '/weights/' >> "$exclude"
    git rm -r -q --cached --ignore-unmatch weights
    size "$@"
    ;;
  restore)
    git reset -q -- weights
    if [ -f "$exclude" ]; then
      grep -vx '/weights/' "$exclude" > "$exclude.tmp" || true
      mv "$exclude.tmp" "$exclude"
    fi
    git diff --quiet -- weights || { echo "device_tree: weights/ differs from HEAD" >&2; exit 1; }
    echo "device_tree: weights/ tracked again"
    ;;
  size)
    shift
    size "$@"
    ;;
  *)
    echo "usage: bash scripts/device_tree.sh slim|restore|size [CARRY...]" >&2
    exit 2
    ;;
esac
