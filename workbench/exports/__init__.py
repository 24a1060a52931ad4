"""Datasets out: `workbench export` (DPO, reward, KTO, Best-of-N and SFT schemas) and where its files go."""
