"""`python -m harness ...` (and `torchrun --nproc_per_node N -m harness run ...`)."""
from .cli.main import main

main()
