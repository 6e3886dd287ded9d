"""`python -m nitroguard`: the same as the `nitroguard` console script."""

from nitroguard._cli import main

main()
