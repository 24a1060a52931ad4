"""`python -m workbench ...` runs the CLI; this is also the entry point for torchrun.

The one module of `workbench/` that imports the top layer: the CLI (`cli/`) sits above `ui/`
and `workbench/`, and `python -m workbench` is the name users and torchrun know it by.
"""

from cli import main

if __name__ == "__main__":
    main()
