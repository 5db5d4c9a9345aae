"""Built-in benchmark cases, one module per op family; importing this registers them."""

from hrrkit.bench.cases import correntropy  # noqa: F401

# --- AFR cases (issue 3) below ---
from hrrkit.bench.cases import additive  # noqa: F401

# --- MSR cases (issue 4) below ---
from hrrkit.bench.cases import msr  # noqa: F401
