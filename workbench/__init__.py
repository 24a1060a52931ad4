"""DPO Workbench: preference data on one DuckDB store.

`workbench` owns the store and orchestrates; `engine` does everything torch; `ui` wires a
Gradio app to `workbench` functions. Run `workbench --help` for the command line.
"""

__version__ = "0.1.0"
