"""The ``dpflow`` command line (typer)."""

import typer

app = typer.Typer(help="dpflow: distortion-perception frontiers of denoising with one score model.",
                  no_args_is_help=True)


@app.command()
def info() -> None:
    """Show versions and the shipped models."""
    import dpcore

    typer.echo(f"dpflow {dpcore.__name__}")


if __name__ == "__main__":
    app()
