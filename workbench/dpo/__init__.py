"""After the export: `dpo train`, policies, `eval policy`, rounds of on-policy DPO and `ablate`."""
