"""python -m ingest_service: run the ingest service alone."""

from shared.launch import main as _main


def main() -> None:
    _main("ingest")


if __name__ == "__main__":
    main()
