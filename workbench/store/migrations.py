"""Append-only, numbered schema migrations.

The four bulk tables (prompts, responses, scores, pairs) carry no PRIMARY KEY: DuckDB's ART
indexes make bulk inserts about 3x slower. Their ids are content hashes and every insert is an
anti-join against what is stored (`queries.insert_new`), with writers serialised by DuckDB's
file lock across processes and by `Store`'s lock inside one; `tests/workbench/test_store.py`
checks the ids stay unique.

Never edit a migration that has shipped: add `m00N_...` at the end. `migrate()` applies the
missing ones in order, each in its own transaction, and records it in `schema_migrations`;
a blank store and a store at any earlier version end at the same schema.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

M001_INITIAL = """
CREATE TABLE runs (
    run_id      VARCHAR PRIMARY KEY,   -- content hash of the run's kind and resolved config
    kind        VARCHAR NOT NULL,      -- import | generation | scoring | training | pairs | export
    status      VARCHAR NOT NULL,      -- running | completed | failed
    config      JSON NOT NULL,         -- resolved configuration
    environment JSON,                  -- code and library versions, host
    summary     JSON,                  -- counts and results
    error       VARCHAR,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE TABLE prompts (
    prompt_id   VARCHAR NOT NULL,      -- hash of the canonical messages
    messages    JSON NOT NULL,         -- [{"role": ..., "content": ...}, ...]
    text        VARCHAR NOT NULL,      -- last user turn, for display and search
    source      VARCHAR NOT NULL,
    tags        VARCHAR[] NOT NULL,
    run_id      VARCHAR NOT NULL,      -- the run that first stored it
    source_line INTEGER,               -- line (or row) of the input file it came from
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE responses (
    response_id   VARCHAR NOT NULL,    -- hash of (prompt, text) if imported, (run, prompt, sample) if generated
    prompt_id     VARCHAR NOT NULL,
    text          VARCHAR NOT NULL,
    origin        VARCHAR NOT NULL,    -- imported | generated
    run_id        VARCHAR NOT NULL,
    sample_index  INTEGER,
    n_chars       INTEGER NOT NULL,
    n_tokens      INTEGER,             -- NULL until something tokenized it
    finish_reason VARCHAR,             -- stop | length; NULL when unknown (imported)
    seed          BIGINT,
    gen_time_s    DOUBLE,
    source_line   INTEGER,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE reward_models (
    rm_id      VARCHAR PRIMARY KEY,    -- content hash of the weights, or of the external scorer's name
    name       VARCHAR NOT NULL,
    version    INTEGER NOT NULL,
    path       VARCHAR,                -- NULL for scores imported from outside
    config     JSON NOT NULL,
    run_id     VARCHAR,                -- training run, when trained here
    created_at TIMESTAMP NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE scores (
    response_id VARCHAR NOT NULL,
    rm_id       VARCHAR NOT NULL,
    score       DOUBLE NOT NULL,
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE pairs (
    pair_id        VARCHAR NOT NULL,
    prompt_id      VARCHAR NOT NULL,
    chosen_id      VARCHAR NOT NULL,
    rejected_id    VARCHAR NOT NULL,
    label_source   VARCHAR NOT NULL,   -- human | rm
    rm_id          VARCHAR,            -- NULL for human labels
    strategy       VARCHAR NOT NULL,   -- human | best-vs-worst | best-vs-random | top-k | all-above-margin
    params         JSON NOT NULL,
    score_chosen   DOUBLE,
    score_rejected DOUBLE,
    margin         DOUBLE,
    run_id         VARCHAR NOT NULL,
    source_line    INTEGER,
    created_at     TIMESTAMP NOT NULL
);

CREATE TABLE exports (
    export_id    VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    format       VARCHAR NOT NULL,
    schema       VARCHAR NOT NULL,
    filter       JSON NOT NULL,
    row_count    BIGINT NOT NULL,
    content_hash VARCHAR NOT NULL,
    store_hash   VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL
);
"""

# Curation signals computed when responses are generated, and the Best-of-N pick.
M002_RESPONSE_SIGNALS = """
ALTER TABLE responses ADD COLUMN flag_near_duplicate_of VARCHAR;
ALTER TABLE responses ADD COLUMN flag_truncated BOOLEAN;
ALTER TABLE responses ADD COLUMN flag_repetition BOOLEAN;

CREATE TABLE bon_picks (
    prompt_id   VARCHAR NOT NULL,
    rm_id       VARCHAR NOT NULL,
    run_id      VARCHAR NOT NULL,      -- the generation run whose samples were compared
    response_id VARCHAR NOT NULL,
    score       DOUBLE NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (prompt_id, rm_id, run_id)
);
"""


def _m003_content_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Re-key prompts, responses and pairs with the ids DuckDB can compute (`workbench.ids`).

    Stores up to m002 used BLAKE2b ids, which only Python could compute; the bulk import needs
    ids SQL can compute. Every id is recomputed from the content it names, and every column that
    refers to one follows. Generated replies keep their recorded seed; a generation run resumed
    after the upgrade derives the seeds of its missing samples from the new prompt ids.
    """
    from workbench.store import content_ids

    messages = "CAST(messages AS STRUCT(role VARCHAR, content VARCHAR)[])"
    con.execute(f"""CREATE TEMP TABLE prompt_ids AS
        SELECT prompt_id AS old, {content_ids.prompt_id_of_messages(messages)} AS new FROM prompts""")
    generated = content_ids.generated_response_id("r.run_id", "p.new", "r.sample_index")
    imported = content_ids.imported_response_id("p.new", "r.text")
    con.execute(f"""CREATE TEMP TABLE response_ids AS
        SELECT r.response_id AS old,
               CASE WHEN r.origin = 'generated' THEN {generated} ELSE {imported} END AS new
        FROM responses r JOIN prompt_ids p ON p.old = r.prompt_id""")
    for table, column, mapping in [
        ("prompts", "prompt_id", "prompt_ids"), ("responses", "prompt_id", "prompt_ids"),
        ("responses", "response_id", "response_ids"), ("responses", "flag_near_duplicate_of", "response_ids"),
        ("scores", "response_id", "response_ids"), ("pairs", "prompt_id", "prompt_ids"),
        ("pairs", "chosen_id", "response_ids"), ("pairs", "rejected_id", "response_ids"),
    ]:
        con.execute(f"UPDATE {table} SET {column} = m.new FROM {mapping} m WHERE {table}.{column} = m.old")
    spec = "CASE WHEN label_source = 'human' THEN 'human' ELSE CAST(params AS VARCHAR) END"
    pair_id = content_ids.pair_id("coalesce(rm_id, 'human')", spec, "chosen_id", "rejected_id")
    con.execute(f"UPDATE pairs SET pair_id = {pair_id}")
    # bon_picks' key columns change: rewrite its rows rather than update a primary key
    con.execute("""CREATE TEMP TABLE picks AS
        SELECT coalesce(p.new, b.prompt_id) AS prompt_id, b.rm_id, b.run_id, coalesce(r.new, b.response_id) AS response_id,
               b.score, b.created_at
        FROM bon_picks b LEFT JOIN prompt_ids p ON p.old = b.prompt_id LEFT JOIN response_ids r ON r.old = b.response_id""")
    con.execute("DELETE FROM bon_picks")
    con.execute("INSERT INTO bon_picks SELECT * FROM picks")
    con.execute("DROP TABLE picks; DROP TABLE response_ids; DROP TABLE prompt_ids")


# Policies trained here (DPO) and the rounds of iterative DPO that produced them.
M004_POLICIES_ROUNDS = """
CREATE TABLE policies (
    policy_id   VARCHAR PRIMARY KEY,   -- content hash of the merged weights (model_fingerprint)
    name        VARCHAR NOT NULL UNIQUE,
    path        VARCHAR NOT NULL,      -- merged weights a plain AutoModelForCausalLM loads
    base        VARCHAR NOT NULL,      -- the policy training started from (its spec as given)
    reference   VARCHAR NOT NULL,      -- DPO's reference model
    export_hash VARCHAR NOT NULL,      -- sha256 of the pairs file it was trained on
    hyper_parameters JSON NOT NULL,
    run_id      VARCHAR NOT NULL,      -- the training run
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE rounds (
    round       INTEGER PRIMARY KEY,   -- 1, 2, ... in the order they were started
    status      VARCHAR NOT NULL,      -- running | completed
    phase       VARCHAR NOT NULL,      -- the last phase finished: started | sampled | scored | paired | trained | evaluated
    policy_in   VARCHAR NOT NULL,      -- spec of the policy that sampled this round
    policy_out  VARCHAR,               -- name of the registered policy it trained
    reference   VARCHAR NOT NULL,
    config      JSON NOT NULL,         -- prompt selection, sampling, labelers, pair rule, filter, DPO config
    generation_run VARCHAR,
    export_hash VARCHAR,
    evaluation  JSON,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

CREATE TABLE round_prompts (
    round     INTEGER NOT NULL,
    prompt_id VARCHAR NOT NULL,
    role      VARCHAR NOT NULL,        -- train | eval
    PRIMARY KEY (round, prompt_id, role)
);

CREATE TABLE policy_evals (
    eval_id    VARCHAR PRIMARY KEY,    -- content hash of what was compared and how
    policy_a   VARCHAR NOT NULL,
    policy_b   VARCHAR NOT NULL,
    config     JSON NOT NULL,
    report     JSON NOT NULL,
    created_at TIMESTAMP NOT NULL
);
"""


# Benchmark prompts found in the store (`workbench decontaminate`): one row per flagged prompt, or
# reply (`response_id` set), and benchmark; a rerun for the same benchmark replaces its rows.
M005_CONTAMINATION = """
CREATE TABLE contamination (
    benchmark    VARCHAR NOT NULL,     -- the benchmark's name (--name, else the file's name)
    prompt_id    VARCHAR NOT NULL,
    response_id  VARCHAR,              -- NULL: the prompt matched; else this reply did
    match        VARCHAR NOT NULL,     -- ngram | near
    span         VARCHAR NOT NULL,     -- the first matching word n-gram, normalised
    matches      INTEGER NOT NULL,     -- how many of the benchmark prompt's n-grams matched
    score        DOUBLE NOT NULL,      -- share of the benchmark prompt's n-grams found
    benchmark_line INTEGER,            -- line (or row) of the benchmark file that matched
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL
);

-- Prompts that repeat an earlier one (`workbench dedup`): the same words, or near (MinHash-LSH
-- candidates whose word 3-gram Jaccard similarity reaches the threshold). A rerun replaces them all.
CREATE TABLE prompt_duplicates (
    prompt_id    VARCHAR NOT NULL,
    duplicate_of VARCHAR NOT NULL,     -- the earliest stored prompt it repeats
    kind         VARCHAR NOT NULL,     -- exact | near
    similarity   DOUBLE NOT NULL,      -- 1 for exact; the Jaccard similarity for near
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL
);
"""


# LLM judges (`workbench judge`): what each judge said, beside the scores it leaves in `scores`.
# A pairwise verdict per unordered pair of replies (a < b by id), both orders kept, so position
# consistency is a column; a rubric rating per reply. NULL verdicts are unparseable remote answers.
M006_JUDGES = """
CREATE TABLE judge_pair_verdicts (
    rm_id           VARCHAR NOT NULL,  -- the judge: a reward_models row of kind 'judge'
    prompt_id       VARCHAR NOT NULL,
    response_a      VARCHAR NOT NULL,  -- the pair's replies, response_a < response_b (the pair's direction does not matter)
    response_b      VARCHAR NOT NULL,
    p_a_first       DOUBLE,            -- P(a better) with a shown first (order A/B); NULL: unparseable answer
    p_a_second      DOUBLE,            -- P(a better) with a shown second (order B/A)
    p_a_better      DOUBLE,            -- the two orders combined (their mean); NULL unless both gave a verdict
    consistent      BOOLEAN,           -- the same winner in both orders; NULL if an order was unparseable or even
    answer_a_first  VARCHAR,           -- a remote judge's raw answers (NULL for a local judge: read from logits)
    answer_a_second VARCHAR,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (rm_id, response_a, response_b)
);

CREATE TABLE judge_ratings (
    rm_id       VARCHAR NOT NULL,
    response_id VARCHAR NOT NULL,
    prompt_id   VARCHAR NOT NULL,
    rating      DOUBLE,                -- expected rating (local) or the rating said (remote); NULL: unparseable
    answer      VARCHAR,               -- a remote judge's raw answer
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (rm_id, response_id)
);
"""


# Human review (`workbench review`, the app's Review tab): queues of pairs to label, the labels people
# gave (who, when, in which left/right order), and the store's identity, which review exports carry so
# that labels come back only into the store they were made for.
M007_HUMAN_REVIEW = """
CREATE TABLE review_items (
    item_id    VARCHAR PRIMARY KEY,    -- hash of (queue, prompt, first, second)
    queue      VARCHAR NOT NULL,       -- the queue's name
    source     VARCHAR NOT NULL,       -- the queue source that added it (lowest-margin, random-audit, ...)
    pair_id    VARCHAR NOT NULL,       -- the stored pair it was taken from
    prompt_id  VARCHAR NOT NULL,
    first_id   VARCHAR NOT NULL,       -- the pair's two replies in id order: which one was chosen stays hidden
    second_id  VARCHAR NOT NULL,
    overlap    INTEGER NOT NULL,       -- how many annotators label it (never one annotator twice)
    position   INTEGER NOT NULL,       -- its place in the queue
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE review_labels (
    item_id      VARCHAR NOT NULL,
    annotator    VARCHAR NOT NULL,     -- the login user
    verdict      VARCHAR NOT NULL,     -- better | tie | both-bad | skip
    preferred_id VARCHAR,              -- with 'better': the reply judged better
    left_id      VARCHAR NOT NULL,     -- the order the replies were shown in
    right_id     VARCHAR NOT NULL,
    note         VARCHAR,
    labeled_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (item_id, annotator)
);

CREATE TABLE store_identity (
    store_id   VARCHAR NOT NULL,       -- a random id drawn once, when the store got this table
    created_at TIMESTAMP NOT NULL
);
INSERT INTO store_identity SELECT CAST(uuid() AS VARCHAR), current_timestamp;
"""


def _sql(script: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def apply(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(script)

    return apply


MIGRATIONS: list[tuple[int, str, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    (1, "m001_initial", _sql(M001_INITIAL)),
    (2, "m002_response_signals", _sql(M002_RESPONSE_SIGNALS)),
    (3, "m003_content_ids", _m003_content_ids),
    (4, "m004_policies_rounds", _sql(M004_POLICIES_ROUNDS)),
    (5, "m005_contamination_and_duplicates", _sql(M005_CONTAMINATION)),
    (6, "m006_judges", _sql(M006_JUDGES)),
    (7, "m007_human_review", _sql(M007_HUMAN_REVIEW)),
]

LATEST = MIGRATIONS[-1][0]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version (0 for a blank file)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


def migrate(con: duckdb.DuckDBPyConnection, target: int = LATEST) -> list[str]:
    """Apply every migration above the store's version up to `target`; return their names."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    applied = []
    version = current_version(con)
    for number, name, apply in MIGRATIONS:
        if number <= version or number > target:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            apply(con)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, current_timestamp)", [number, name])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
