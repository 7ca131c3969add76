"""``python -m squidpy`` runs the same command line as the ``squidpy`` script."""
from squidpy.cli import main

if __name__ == "__main__":
    main()
