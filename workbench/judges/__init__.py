"""LLM judges as labelers: pairwise verdicts and rubric ratings from a local causal LM or an endpoint, stored as a labeler's scores."""
