#!/usr/bin/env bash
# Regenerate every figure and table: executes notebooks/NN_*.ipynb in order with papermill
# (01_unet.ipynb once per network kind: `python -m emseg_lib.models --kinds`).
#
#   ./run_all.sh [--profile smoke|quick|full] [--data PATH] [--figures DIR] [--runs DIR]
#                [--out DIR] [--real-data DIR] [--engine inline|local|slurm] [--jobs N]
#                [--partition NAME] [--notebook-limit SECONDS] [--dry-run] [--only NAMES]
#
# Paths follow one rule, shared with the notebooks (emseg_lib/infra/paths.py): data/, figures/,
# runs/<profile>/ (checkpoints; a rerun resumes from them), outputs/<profile>/ (the executed
# notebooks). The profile run is recorded, so notebooks opened afterwards in JupyterLab find
# its checkpoints. --real-data DIR: where the real EM stacks are (default data/; fetch them
# with `emseg fetch vnc` and `emseg fetch fibsem`); recorded too, so notebook 05 reopened in
# JupyterLab shows this run's real-data tables. --engine: where the training sweeps of
# notebooks 03 and 04 (Boundless masks, transfer runs, adversarial seeds) go: inline (default,
# one after the other), local (--jobs N at once on this machine, one GPU each) or slurm (--jobs
# N at once, one GPU each, --partition NAME); every job resumes from its run folder, so the
# results do not depend on the engine. Progress (epochs, steps, time left) is printed as the
# notebooks run. Stops at the first failing notebook and names it. A notebook still running
# after the profile's limit (--notebook-limit SECONDS to change it) is taken as hung: the stacks
# of papermill and its kernel are printed, it is stopped and the run fails (emseg_lib/infra/watchdog.py).
# --only NAMES: run only these notebooks (comma-separated, e.g. 00_data_exploration,02_stylegan).
# --dry-run: every notebook at the profile's sizes (volume shape, widths, crops, batches,
# tiling, grids) but only a few training steps and prediction slices (profile <profile>-dry,
# emseg_lib.profiles.dry_run), from a clean runs folder under outputs/<profile>-dry/; records
# each notebook's wall time and peak host/GPU memory and the rates of its stages, then
# benchmarks/dry_run.py measures the profile's per-step rates and writes the estimated time of
# the real run to benchmarks/results/. Its figures go to outputs/<profile>-dry/figures.
# Also switches on, for this Python environment, a Jupyter save hook that keeps notebooks/
# free of outputs when you run them in JupyterLab (emseg_lib/jupyter_hooks.py).
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
profile="quick"
data="" figures="" runs="" out="" real_data=""
engine="inline" jobs=1 partition="" notebook_limit="" dry_run=0 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data) data="$(realpath -m "$2")"; shift 2 ;;
    --figures) figures="$(realpath -m "$2")"; shift 2 ;;
    --runs) runs="$(realpath -m "$2")"; shift 2 ;;
    --out) out="$(realpath -m "$2")"; shift 2 ;;
    --real-data) real_data="$(realpath -m "$2")"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --partition) partition="$2"; shift 2 ;;
    --notebook-limit) notebook_limit="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  smoke|quick|full) ;;
  *) echo "run_all.sh: --profile must be smoke, quick or full, got '$profile'" >&2; exit 2 ;;
esac
case "$engine" in
  inline) engine_spec="inline" ;;
  local|slurm) engine_spec="$engine:$jobs${partition:+:$partition}" ;;
  *) echo "run_all.sh: --engine must be inline, local or slurm, got '$engine'" >&2; exit 2 ;;
esac
case "$jobs" in
  ''|*[!0-9]*|0) echo "run_all.sh: --jobs must be a positive number, got '$jobs'" >&2; exit 2 ;;
esac
for name in ${only//,/ }; do
  [ -f "$root/notebooks/$name.ipynb" ] || { echo "run_all.sh: --only: no notebook" \
    "notebooks/$name.ipynb (give names like 00_data_exploration, comma-separated)" >&2; exit 2; }
done
case "$notebook_limit" in
  '') notebook_limit="$(python -c "from emseg_lib.profiles import get_profile
print(get_profile('$profile').notebook_limit_s)")" ;;
  *[!0-9]*|0) echo "run_all.sh: --notebook-limit must be a positive number of seconds, got" \
                   "'$notebook_limit'" >&2; exit 2 ;;
esac
kinds="$(python -m emseg_lib.models --kinds)"  # the trainable networks of models.MODELS
project="$(realpath -m "${EMSEG_ROOT:-$root}")"
real_data="${real_data:-$project/data}"
base_profile="$profile" record="--record"
if [ "$dry_run" = 1 ]; then
  profile="$profile-dry" record=""  # never taken as the last run by notebooks opened later
fi
eval "$(EMSEG_ROOT="$project" python -m emseg_lib.infra.paths --profile "$profile" \
  --real-data "$real_data" $record | sed 's/^/default_/')"
data="${data:-$default_data}"
out="${out:-$default_outputs}"
records=""
if [ "$dry_run" = 1 ]; then
  [ -z "$runs" ] || { echo "run_all.sh: --dry-run trains from a clean folder of its own" \
                           "($out/runs); do not give --runs with it" >&2; exit 2; }
  runs="$out/runs" records="$out/records" figures="${figures:-$out/figures}"
  marker="$out/.emseg-dry-run"
  for own in "$runs" "$records"; do  # removed below: only ever a dry run's own
    if [ -e "$own" ] && [ ! -f "$marker" ]; then
      echo "run_all.sh: $own exists but was not made by a dry run; give --out an empty" \
           "folder" >&2
      exit 2
    fi
  done
  rm -rf "$runs" "$records"  # a dry run measures, so it never resumes
  mkdir -p "$out" "$records" && : > "$marker"
fi
figures="${figures:-$default_figures}"
runs="${runs:-$default_runs}"
mkdir -p "$figures" "$runs" "$out"
python -m emseg_lib.jupyter_hooks
[ -f "$data" ] || echo "run_all.sh: $data not found: the notebooks use the SYNTHETIC EM volume"
stamp="$(mktemp)"
export EMSEG_PROGRESS=log EMSEG_PROGRESS_FILE="$out/progress.log"
: > "$EMSEG_PROGRESS_FILE"
tail -n 0 -f "$EMSEG_PROGRESS_FILE" &
tail_pid=$!
trap 'kill "$tail_pid" 2>/dev/null; rm -f "$stamp"' EXIT
started=$(date +%s)
run_notebook() {  # notebook, executed copy, extra papermill arguments...
  local notebook="$1" executed="$2"
  shift 2
  local began=$(date +%s)
  echo "== $(basename "$executed") (profile $profile)"
  local status=0
  local record_flags=()
  if [ -n "$records" ]; then
    export EMSEG_RECORD_FILE="$records/$(basename "$executed" .ipynb).jsonl"
    record_flags=(--record "$records/notebooks.jsonl")
  fi
  python -m emseg_lib.infra.watchdog --limit "$notebook_limit" --what "$(basename "$executed" .ipynb)" \
      "${record_flags[@]}" -- papermill "$notebook" "$executed" --cwd "$root/notebooks" --no-progress-bar \
      -p profile "$profile" -p data_path "$data" -p figures_dir "$figures" -p runs_dir "$runs" \
      "$@" 2> "$out/papermill.log" || status=$?
  if [ "$status" = 124 ]; then
    sed -n '/^watchdog:/,$p' "$out/papermill.log" >&2
    echo "run_all.sh: FAILED: $(basename "$executed") hung (no end after $notebook_limit s;" \
         "stacks above, log $out/papermill.log)" >&2
    exit 1
  elif [ "$status" != 0 ]; then
    tail -n 20 "$out/papermill.log" >&2
    echo "run_all.sh: FAILED in $(basename "$notebook") (executed copy with the error: $executed)" >&2
    exit 1
  fi
  echo "== $(basename "$executed") done in $(( $(date +%s) - began )) s"
}
for notebook in "$root"/notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$notebook" .ipynb)"
  if [ -n "$only" ]; then
    case ",$only," in *",$name,"*) ;; *) continue ;; esac
  fi
  case "$name" in
    01_unet) for kind in $kinds; do
               run_notebook "$notebook" "$out/${name}_$kind.ipynb" -p kind "$kind"
             done ;;
    03_boundless_masks|04_transfer_learning)
      run_notebook "$notebook" "$out/$name.ipynb" -p engine "$engine_spec" ;;
    05_threshold_tables) run_notebook "$notebook" "$out/$name.ipynb" -p real_data_dir "$real_data" ;;
    *) run_notebook "$notebook" "$out/$name.ipynb" ;;
  esac
done

echo "== done in $(( $(date +%s) - started )) s; executed notebooks in $out; written to $figures:"
find "$figures" -type f -newer "$stamp" \( -name '*.png' -o -name '*.csv' -o -name '*.md' \) \
  | sort | sed "s|^$figures/|  |"
echo "== checkpoints and saved predictions in $runs use $(du -sh "$runs" | cut -f1) of disk"
if [ "$dry_run" = 1 ]; then
  python "$root/benchmarks/dry_run.py" --profile "$base_profile" --records "$records" \
    --runs "$runs" --results "$project/benchmarks/results" --cache-dir "$(dirname "$data")"
else
  echo "== open the notebooks with: jupyter lab notebooks/   (they find this run's checkpoints)"
fi
