"""python -m versioning_service: run the versioning service alone."""

from shared.launch import main as _main


def main() -> None:
    _main("versioning")


if __name__ == "__main__":
    main()
