"""The DPO Workbench app (Gradio): `build_app(store)` wires tabs to `workbench` functions;
`launch(...)` serves it (what `workbench ui` runs)."""

import os

# No usage reports to Gradio's servers, whatever the environment says.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from ui.app import build_app, close_app, launch  # noqa: E402

__all__ = ["build_app", "close_app", "launch"]
