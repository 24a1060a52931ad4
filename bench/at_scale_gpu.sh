#!/usr/bin/env bash
# UNTESTED: written without a GPU machine; nothing below has run on one yet.
#
# One round of the loop at scale, driven from this machine:
#   1. vLLM serves the policy (data-parallel replicas on the GPUs, or several URLs);
#   2. `workbench bon --endpoint` samples N replies per prompt from it, 64 requests in flight;
#   3. `workbench rm train` trains a reward model on the store's pairs (flash-attn's varlen kernel
#      is used on CUDA when installed; see docs/endpoints.md);
#   4. `workbench serve` serves that reward model on a GPU, and `workbench score --endpoint`
#      scores the samples through it, as a remote labeler.
# Prints one JSON line per step with its wall time (stderr), then a summary (stdout); the store and
# logs stay in $WORK.
#
#   POLICY=Qwen/Qwen2.5-1.5B-Instruct PROMPTS=prompts.jsonl bash bench/at_scale_gpu.sh
#
# Needs: pip install -e '.[vllm,gpu]' (vLLM, flash-attn), and 2+ GPUs (policy on GPU 0..DP-1,
# reward model on the last one). Set DP=1 for one policy replica.
set -euo pipefail

POLICY=${POLICY:-Qwen/Qwen2.5-1.5B-Instruct}
PROMPTS=${PROMPTS:?a prompts file for workbench import --format prompts}
BASE=${BASE:-smollm2}                      # reward-model backbone
N=${N:-8}
LIMIT=${LIMIT:-2000}
DP=${DP:-$(( $(nvidia-smi -L | wc -l) - 1 ))}
RM_GPU=${RM_GPU:-$DP}
WORK=${WORK:-$(mktemp -d /tmp/at-scale-XXXX)}
POLICY_PORT=${POLICY_PORT:-8000}
RM_PORT=${RM_PORT:-8100}
export WORKBENCH_DB=$WORK/store.duckdb
wb() { python -m workbench -q "$@"; }
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@"; echo "{\"step\": \"$name\", \"seconds\": $(echo "$(date +%s.%N) - $t0" | bc)}" >&2; }
wait_for() { for _ in $(seq 600); do curl -sf "$1" >/dev/null && return 0; sleep 1; done; echo "no answer from $1" >&2; exit 1; }
cleanup() { kill ${VLLM_PID:-} ${RM_PID:-} 2>/dev/null || true; }
trap cleanup EXIT

# 1. The policy: one vLLM server with DP data-parallel replicas (or start several and pass every URL).
CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((DP - 1))) vllm serve "$POLICY" --port "$POLICY_PORT" \
  --data-parallel-size "$DP" --enable-prefix-caching > "$WORK/vllm.log" 2>&1 &
VLLM_PID=$!
step import wb import "$PROMPTS" --format prompts --source at-scale
wait_for "http://127.0.0.1:$POLICY_PORT/v1/models"

# 2. Samples from the server (n per request: vLLM honours it; seeds per request).
step sample wb sample --endpoint "http://127.0.0.1:$POLICY_PORT" --model "$POLICY" --n "$N" \
  --max-new-tokens 512 --concurrency 64 --limit "$LIMIT" --json > "$WORK/sample.json"

# 3. A reward model trained on the store's human pairs (import them first, e.g. hh-rlhf), on GPU.
if [ -n "${PAIRS:-}" ]; then
  step import_pairs wb import "$PAIRS"
  CUDA_VISIBLE_DEVICES=$RM_GPU step train wb rm train --from-store --label human --base "$BASE" \
    --out "$WORK/rm" --recipe full --precision bf16 --max-length 2048
  RM=$WORK/rm
else
  RM=${RM:?set PAIRS (human pairs to train on) or RM (a reward-model directory)}
fi

# 4. The reward model on a GPU behind `workbench serve`; the samples scored through it.
CUDA_VISIBLE_DEVICES=$RM_GPU python -m workbench --db "$WORK/serve.duckdb" serve --rm "$RM" \
  --port "$RM_PORT" > "$WORK/serve.log" 2>&1 &
RM_PID=$!
wait_for "http://127.0.0.1:$RM_PORT/health"
step score wb score --endpoint "http://127.0.0.1:$RM_PORT" --api workbench --rm at-scale-rm \
  --concurrency 16 --batch-size 64 --json > "$WORK/score.json"
step pairs wb pairs build --rm at-scale-rm --strategy best-vs-worst
echo "{\"work\": \"$WORK\", \"sample\": $(cat "$WORK/sample.json" | tr -d '\n'), \"score\": $(cat "$WORK/score.json" | tr -d '\n')}"
