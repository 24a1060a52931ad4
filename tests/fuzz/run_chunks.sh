#!/bin/bash
# The long fuzz run in chunks, so that a run stopped early still reports what it did:
#   tests/fuzz/run_chunks.sh TARGET CHUNKS CASES_PER_CHUNK [FIRST_SEED]
# e.g. tests/fuzz/run_chunks.sh test_fuzz_import.py::test_fuzz_import_text_files 50 200
# Each chunk runs CASES_PER_CHUNK cases with the next --hypothesis-seed; logs go to fuzz-logs/.
set -u
target=$1 chunks=$2 cases=$3 first=${4:-1}
mkdir -p fuzz-logs
name=$(echo "$target" | sed 's/.*:://')
for seed in $(seq "$first" $((first + chunks - 1))); do
  start=$(date +%s)
  WORKBENCH_FUZZ_EXAMPLES=$cases WORKBENCH_FUZZ_LOG=fuzz-logs/$name.cases python -m pytest -q -p no:cacheprovider \
    -m fuzz "tests/fuzz/$target" --hypothesis-seed="$seed" --hypothesis-show-statistics > "fuzz-logs/$name.$seed.log" 2>&1
  echo "seed=$seed exit=$? seconds=$(( $(date +%s) - start ))" >> "fuzz-logs/$name.summary"
done
