"""The reward server (`workbench serve`): a registered reward model as an HTTP reward service.

`config` (settings), `transcripts` (full text -> prompt + reply), `batching` (dynamic batches),
`app` (the HTTP API), `server` (load, run, stop), `rollout_log` (rollouts into the store),
`metrics` (Prometheus text), `status` (the status file the app's Overview reads).
"""
