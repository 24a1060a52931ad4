#!/bin/bash
# The judged figure of issue 25: SmolLM2-135M-Instruct as a pairwise judge on hh-rlhf pairs (accuracy
# against the human labels, position consistency), next to a head-only reward model trained on OTHER
# pairs of the same file and evaluated on the very pairs the judge saw, and the length baselines.
# Usage: bench/judge_measure.sh WORKDIR   (run from the repository root; logs and JSON go to WORKDIR)
# HH=path/to/hh-rlhf-harmless-1800.jsonl overrides the data file (default: ../shared/data beside the checkout).
# TRAIN_LINES (default 300) lines from the file's start train the reward model; JUDGE_FROM (901) and
# JUDGE_LINES (302) pick the judged lines (lines 926 and 1104 are refused as invalid: 300 pairs).
# OMP_NUM_THREADS (default 1) threads per lane; the judge and the reward model run side by side.
# RM_DIR=path/to/a/trained/reward-model skips the training: that model (trained on lines that are not
# judged, e.g. bench/rounds_measure.sh's rm-hh-a, lines 1-400) is registered and evaluated instead.
set -euxo pipefail
TRAIN_LINES=${TRAIN_LINES:-300} JUDGE_FROM=${JUDGE_FROM:-901} JUDGE_LINES=${JUDGE_LINES:-302}
MAX_LENGTH=${MAX_LENGTH:-512}
HH=$(realpath "${HH:-../shared/data/hh-rlhf-harmless-1800.jsonl}")
OUT=$(realpath -m "${1:?give a work directory}")
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
sed -n "1,${TRAIN_LINES}p" "$HH" > "$OUT/hh-train.jsonl"
sed -n "${JUDGE_FROM},$((JUDGE_FROM + JUDGE_LINES - 1))p" "$HH" > "$OUT/hh-judged.jsonl"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two lanes side by side, one thread each, each on its own store holding the same judged pairs:
# the judge, and the reward model (trained on the other lines, evaluated on the judged pairs).
J="python -m workbench --db $OUT/judge.duckdb" R="python -m workbench --db $OUT/rm.duckdb"
$J import "$OUT/hh-judged.jsonl" --skip-invalid --rejects "$OUT/rejects.jsonl" --json > "$OUT/import.json"
$R import "$OUT/hh-judged.jsonl" --skip-invalid --rejects "$OUT/rejects-rm.jsonl" --json > /dev/null
date -u
( /usr/bin/time -v $J judge pairs --judge smollm2 --max-length "$MAX_LENGTH" --batch-size 8 --json \
      > "$OUT/judge.json" 2> "$OUT/judge.err"
  $J judge report judge-smollm2-pairwise --json > "$OUT/judge_report.json"; date -u ) &
if [ -n "${RM_DIR:-}" ]; then
    $R rm register "$RM_DIR" --name rm-hh > "$OUT/rm_train.log" 2> "$OUT/rm_train.err"
else
    /usr/bin/time -v $R rm train --data "$OUT/hh-train.jsonl" --skip-invalid --base smollm2 --out "$OUT/rm-hh" \
        --name rm-hh --max-length "$MAX_LENGTH" > "$OUT/rm_train.log" 2> "$OUT/rm_train.err"
fi
/usr/bin/time -v $R rm eval --rm rm-hh --from-store --label human --max-length "$MAX_LENGTH" --json \
    > "$OUT/rm_eval.json" 2> "$OUT/rm_eval.err"
date -u
wait
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
report, rm = json.load(open(f"{out}/judge_report.json")), json.load(open(f"{out}/rm_eval.json"))
print(json.dumps({"pairs_judged": report["verdicts"]["pairs"], "judge_accuracy": report["human_agreement"],
                  "position_consistency": report["position_consistency"],
                  "p_first_shown_better": report["verdicts"]["p_first_shown_better"],
                  "rm_pairs": rm["n"], "rm_accuracy": rm["accuracy"], "longer_wins": rm["length_baseline"],
                  "shorter_wins": rm.get("shorter_baseline")}, indent=2))
PY
