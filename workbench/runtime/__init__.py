"""How long work runs for the app: jobs as CLI processes, the per-store job slots, adoption after a crash, a shared store, loopback rules."""
