"""python -m retrieval_service: run the retrieval service alone."""

from shared.launch import main as _main


def main() -> None:
    _main("retrieval")


if __name__ == "__main__":
    main()
