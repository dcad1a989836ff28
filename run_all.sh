#!/usr/bin/env bash
# Regenerate every figure and table: executes notebooks/NN_*.ipynb in order with papermill.
#
#   ./run_all.sh [--profile smoke|quick|full] [--data PATH] [--figures DIR] [--runs DIR]
#                [--out DIR]
#
# Executed notebooks go to --out (default outputs/<profile>/), figures and tables to
# --figures (default figures/), checkpoints to --runs (default runs/<profile>/; a rerun resumes
# from them). Stops at the first failing notebook and names it.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
profile="quick"
data="$root/data/sample_A_20160501.hdf"
figures="$root/figures"
runs=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data) data="$(realpath -m "$2")"; shift 2 ;;
    --figures) figures="$(realpath -m "$2")"; shift 2 ;;
    --runs) runs="$(realpath -m "$2")"; shift 2 ;;
    --out) out="$(realpath -m "$2")"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  smoke|quick|full) ;;
  *) echo "run_all.sh: --profile must be smoke, quick or full, got '$profile'" >&2; exit 2 ;;
esac
runs="${runs:-$root/runs/$profile}"
out="${out:-$root/outputs/$profile}"
mkdir -p "$figures" "$runs" "$out"
[ -f "$data" ] || echo "run_all.sh: $data not found: the notebooks use the SYNTHETIC EM volume"

stamp="$(mktemp)"
started=$(date +%s)
for notebook in "$root"/notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$notebook")"
  echo "== $name (profile $profile)"
  if ! papermill "$notebook" "$out/$name" --cwd "$root/notebooks" --progress-bar \
      -p profile "$profile" -p data_path "$data" -p figures_dir "$figures" \
      -p runs_dir "$runs"; then
    echo "run_all.sh: FAILED in $name (executed copy with the error: $out/$name)" >&2
    exit 1
  fi
done

echo "== done in $(( $(date +%s) - started )) s; written to $figures:"
find "$figures" -type f -newer "$stamp" \( -name '*.png' -o -name '*.csv' -o -name '*.md' \) \
  | sort | sed "s|^$figures/|  |"
rm -f "$stamp"
