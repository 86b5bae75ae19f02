"""``python -m dqflow``: the same as the ``dqflow`` command."""

from dqflow.cli import main

if __name__ == "__main__":
    main()
