"""Fused Triton kernels of hrrkit, installed as ``hrrkit.kernels``.

One file per fused op: the ``@triton.jit`` kernels and the ``torch.autograd.Function`` that
launches them. Kernels know nothing about modules, configs or data; the reference ops and the
dispatch live in ``hrrkit.ops``. Importing a kernel module imports Triton, so ``hrrkit.ops``
imports them lazily, only when the fused path is chosen.

Note: under ``TRITON_INTERPRET=1`` Triton decides at decoration time whether a kernel is
interpreted, so the variable must be set before a kernel module is first imported.
"""
