"""Built-in benchmark cases, one module per op family; importing this registers them."""

from hrrkit.bench.cases import (
    additive,  # noqa: F401
    correntropy,  # noqa: F401
    msr,  # noqa: F401
)
