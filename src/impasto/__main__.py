"""``python -m impasto ...``: the same as the ``impasto`` command."""

from impasto.cli import app

if __name__ == "__main__":
    app(prog_name="impasto")
