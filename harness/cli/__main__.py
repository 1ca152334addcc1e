"""`python -m harness.cli ...` (and `torchrun -m harness.cli ...`)."""
from .main import main

main()
