"""The circuitflow command line."""

import click


@click.group()
def main() -> None:
    """circuitflow: attribution graphs as a cached workflow."""


if __name__ == "__main__":
    main()
