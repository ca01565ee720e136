"""`python -m ingan.runtime`: the same as `ingan-run`."""

from ingan.runtime.cli import main

if __name__ == "__main__":
    main(prog_name="ingan-run")
