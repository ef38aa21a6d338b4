"""``python -m recsys_assets.datagen``: the same as ``recsys-generate``."""

from recsys_assets.datagen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
