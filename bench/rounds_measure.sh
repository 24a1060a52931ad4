#!/bin/bash
# The judged measurement: one round (200 fresh hh-rlhf prompts x 4 samples from SmolLM2-135M-Instruct,
# pairs by rm-hh-a, DPO with LoRA, evaluation on 200 held-out prompts, held-out RM rm-hh-b), then the
# ablation (best-vs-worst with --min-margin at the median margin vs one random pair per prompt).
# Usage: bench/rounds_measure.sh WORKDIR   (run from the repository root; logs and JSON go to WORKDIR)
# HH=path/to/hh-rlhf-harmless-1800.jsonl overrides the data file (default: ../shared/data beside the checkout).
set -euxo pipefail
# RM_PAIRS (default 400) pairs from each half train the two reward models, RM_MAX_LENGTH (512) tokens each.
RM_PAIRS=${RM_PAIRS:-400} RM_MAX_LENGTH=${RM_MAX_LENGTH:-512}
# DPO: the DPO settings of the round and of both arms of the ablation (one setting for all three).
DPO=${DPO:---lr 2e-4 --epochs 1 --beta 0.1 --batch-size 8 --micro-batch-size 4 --max-length 256 --max-steps 12}
HH=$(realpath "${HH:-../shared/data/hh-rlhf-harmless-1800.jsonl}")
OUT=$(realpath -m "${1:?give a work directory}")
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
sed -n "1,${RM_PAIRS}p" "$HH" > "$OUT/hh-a.jsonl"  # rm-hh-a: the file's first lines, rm-hh-b: its second half's
sed -n "901,$((900 + RM_PAIRS))p" "$HH" > "$OUT/hh-b.jsonl"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
W="python -m workbench --db $OUT/m.duckdb"
$W import "$HH" --skip-invalid --rejects "$OUT/rejects.jsonl"
$W rm train --data "$OUT/hh-a.jsonl" --skip-invalid --base smollm2 --out "$OUT/rm-hh-a" --name rm-hh-a --max-length "$RM_MAX_LENGTH"
$W rm train --data "$OUT/hh-b.jsonl" --skip-invalid --base smollm2 --out "$OUT/rm-hh-b" --name rm-hh-b --max-length "$RM_MAX_LENGTH"
date -u
/usr/bin/time -v $W round --rm rm-hh-a --heldout-rm rm-hh-b --source hh-rlhf-harmless-1800 \
    --prompts 200 --eval-prompts 200 --n 4 --max-new-tokens 64 --out-root $OUT/rounds \
    $DPO \
    --json > "$OUT/round.json" 2> "$OUT/round.err"
date -u
$W rounds
python bench/round_floor.py --db "$OUT/m.duckdb" --round 1 > "$OUT/floor.json"   # the phases against this CPU's floor
MARGIN=$(python - "$OUT/m.duckdb" <<'PY'
import json; from workbench.store import Store
import sys; store = Store(sys.argv[1])
with store.connect() as con:
    run = con.execute("SELECT generation_run FROM rounds WHERE round = 1").fetchall()[0][0]
    print(con.execute("SELECT median(margin) FROM pairs p JOIN responses c ON c.response_id = p.chosen_id "
                      "WHERE c.run_id = ? AND p.strategy = 'best-vs-worst'", [run]).fetchall()[0][0])
PY
)
echo "median margin $MARGIN"
date -u
/usr/bin/time -v $W ablate --round 1 --strategy best-vs-worst --min-margin $MARGIN --baseline random-pair \
    --heldout-rm rm-hh-b --max-new-tokens 64 --out-root $OUT/ablation \
    $DPO --json > "$OUT/ablate.json" 2> "$OUT/ablate.err"
date -u
$W ablate --round 1 --strategy best-vs-worst --min-margin $MARGIN --baseline random-pair \
    --heldout-rm rm-hh-b --max-new-tokens 64 --out-root $OUT/ablation \
    $DPO > "$OUT/ablate.md" 2>/dev/null
date -u
