"""Drop-in fused reads for the STM family's official code: XMem, Cutie, STCN, STM, SwiftNet.

Each submodule's ``patch()`` finds that project's module on the user's ``sys.path``, checks that it
is the version it knows, replaces the memory read (the similarity, the top-k softmax, the readout
and any usage bookkeeping) by :func:`swiftcuda.ops.memory_read`, which never builds the entries x
pixels affinity, and returns a :class:`PatchHandle` whose ``undo()`` restores the originals (it is a
context manager too)::

    import swiftcuda.integrations.xmem as sx
    handle = sx.patch()          # XMem's MemoryManager now reads through swiftcuda
    ...
    handle.undo()

No project's code is imported until its ``patch()`` is called. See docs/stm-family.md.
"""

from swiftcuda.integrations._patching import IntegrationError, PatchHandle

__all__ = ["FAMILIES", "IntegrationError", "PatchHandle"]

# Submodule of each family, for tools that list them.
FAMILIES = ("xmem", "cutie", "stcn", "stm", "swiftnet")
