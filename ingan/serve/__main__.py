"""`python -m ingan.serve`: the same as `ingan-serve`."""

from ingan.serve.cli import main

if __name__ == "__main__":
    main(prog_name="ingan-serve")
