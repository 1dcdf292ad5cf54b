#!/usr/bin/env bash
# Replay the three demo patients on the lumbar spine pathway: each element's status at key moments.
# Run from anywhere: ./deploy/demo/simulate.sh (extra arguments go to every simulate, e.g. --at).
set -euo pipefail

cd "$(dirname "$0")/../.."
export COLUMNS=200  # the schedule is wide: one column per moment replayed
ERAS=.venv/bin/eras
PATIENTS=deploy/demo/patients

simulate() {
    local heading=$1 file=$2
    shift 2
    printf '\n=== %s ===\n' "$heading"
    "$ERAS" pathway simulate pathways/lumbar_fusion.yaml --patient "$PATIENTS/$file" "$@"
}

simulate "a: 68 F, never smoked, PONV history, anaemic - fusion across the March clock change, a few misses" \
    a_fusion_ponv_anaemia.json "$@"
simulate "b: 52 M, smoker, diabetic (HbA1c 9.1 %) - decompression, poor compliance after surgery" \
    b_decompression_smoker_diabetes.json "$@"
simulate "c: 45 F, ex-smoker - fusion, near-perfect compliance, home on POD2" \
    c_fusion_fast_track.json "$@"
