"""Replies and their scores: `workbench sample`, `bon` and `score` with local models, and the prompt selection they share."""
