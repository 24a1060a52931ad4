"""The store's shared queries, one module per concern (the schema, the bulk import lane and the
SQL that serves a single workbench module live beside this package: see `workbench.store`):

    fetch              run a statement, get rows / one value / dicts / a changed-row count
    runs               the runs table (start, finish, restart, list)
    reward_models      registered models (as RegisteredModel); lookup by id, NAME, NAME@VERSION
    new_rows           first-writer-wins bulk inserts of prompts, responses, scores, pairs
    prompts_responses  prompt selection, a run's samples, curation flags, token counts
    scores             what a reward model still has to score; Best-of-N picks
    pairs              pair-building strategies
    pair_filter        the pair filter (one SQL fragment for the export, the app's index, SFT replies)
    export             the export query and its staging
    contamination      benchmark n-gram overlap (`workbench decontaminate`)
    duplicates         duplicate prompts, exact and near (`workbench dedup`)
    explain            why a pair is in or out of a selection; the filter waterfall
    pair_index         the app's in-memory curation index
    policies           policies trained here (DPO) and policy evaluations
    rounds             iterative DPO rounds and their prompt slices
    stats              table counts, scores per model, pairs per labeler
    labelers           who labelled given pairs (to keep a model from being graded on its own labels)
    judges             LLM judges: what is left to judge, verdicts (position consistency per pair), ratings
    overview           the Overview's histograms, length bias and ties
    browse             the prompt browser's pages and detail
    review_queue       review queues: what each source proposes, items, the next one an annotator sees
    review_labels      review labels; the human verdict on a pair of replies; review export and import

Every statement takes `?` or `$name` parameters; bulk data arrives as Arrow tables registered
on the connection, then moves in one INSERT ... SELECT. Callers use the package
(`queries.get_run(con, ...)`); every public function is re-exported here.
"""

from workbench.store.queries.browse import *  # noqa: F401,F403
from workbench.store.queries.contamination import *  # noqa: F401,F403
from workbench.store.queries.duplicates import *  # noqa: F401,F403
from workbench.store.queries.explain import *  # noqa: F401,F403
from workbench.store.queries.export import *  # noqa: F401,F403
from workbench.store.queries.fetch import *  # noqa: F401,F403
from workbench.store.queries.judges import *  # noqa: F401,F403
from workbench.store.queries.labelers import *  # noqa: F401,F403
from workbench.store.queries.new_rows import *  # noqa: F401,F403
from workbench.store.queries.overview import *  # noqa: F401,F403
from workbench.store.queries.pair_filter import *  # noqa: F401,F403
from workbench.store.queries.pair_index import *  # noqa: F401,F403
from workbench.store.queries.pairs import *  # noqa: F401,F403
from workbench.store.queries.policies import *  # noqa: F401,F403
from workbench.store.queries.prompts_responses import *  # noqa: F401,F403
from workbench.store.queries.review_labels import *  # noqa: F401,F403
from workbench.store.queries.review_queue import *  # noqa: F401,F403
from workbench.store.queries.reward_models import *  # noqa: F401,F403
from workbench.store.queries.rounds import *  # noqa: F401,F403
from workbench.store.queries.runs import *  # noqa: F401,F403
from workbench.store.queries.scores import *  # noqa: F401,F403
from workbench.store.queries.stats import *  # noqa: F401,F403
