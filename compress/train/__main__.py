"""``torchrun -m compress.train [train options]``: the entry torchrun runs on every worker."""

import sys

from compress.cli.main import app

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    app(["train", *args], prog_name="compress train")
