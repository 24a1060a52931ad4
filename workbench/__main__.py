"""`python -m workbench ...` runs the CLI; this is also the entry point for torchrun."""

from workbench.cli import main

if __name__ == "__main__":
    main()
