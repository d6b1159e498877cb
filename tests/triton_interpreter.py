"""Triton's interpreter without its repeated re-patching, for the test suite.

Under ``TRITON_INTERPRET=1`` each call of a ``@triton.jit`` helper from inside a kernel first
re-patches ``triton.language`` (hundreds of attributes), then runs the helper. The launch has
already patched the language for the kernel, the helper's first call in a launch patches what its
own module sees, and Triton never undoes a helper's patch during the launch; so every later call of
the same helper in that launch repeats work whose result is already in place. The kernels here call
helpers in their inner loops (key products, tile logits), and that repetition was about half of
their interpreted time. :func:`skip_repeated_patching` keeps each helper's first patch in a launch
and skips the repeats. What the kernels compute is unchanged: the op tests hold every interpreted
kernel to its float64 spec with the shim in place.

The shim is applied only to an interpreter whose helper call is exactly the one it replaces
(:data:`EXPECTED_HELPER_CALL`); any other Triton release keeps its interpreter as it is.
"""

from __future__ import annotations

import inspect
import textwrap

#: The source of ``InterpretedFunction.__call__`` that the shim replaces (Triton 3.7 and 3.8).
EXPECTED_HELPER_CALL = """\
def __call__(self, *args, **kwargs):
    # This is a device function call
    _patch_lang(self.fn)
    fn = self.rewrite()
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise InterpreterError(repr(e)) from e
"""


def skip_repeated_patching() -> bool:
    """Make an interpreted helper patch the language on its first call of each launch only.

    Returns:
        True when the shim is in place (now or before), False when this interpreter is not the
        one it was written for (nothing is changed then).
    """
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    helper_class = getattr(interpreter, "InterpretedFunction", None)
    launch_class = getattr(interpreter, "GridExecutor", None)
    patch_language = getattr(interpreter, "_patch_lang", None)
    if helper_class is None or launch_class is None or patch_language is None:
        return False
    if getattr(helper_class.__call__, "skips_repeated_patching", False):
        return True
    try:
        source = textwrap.dedent(inspect.getsource(helper_class.__call__))
    except (OSError, TypeError):
        return False
    if source != EXPECTED_HELPER_CALL:
        return False

    patched_this_launch: set = set()
    run_launch = launch_class.__call__

    def call_helper(self, *args, **kwargs):
        if self.fn not in patched_this_launch:
            patch_language(self.fn)
            patched_this_launch.add(self.fn)
        fn = self.rewrite()
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise interpreter.InterpreterError(repr(error)) from error

    def launch(self, *args, **kwargs):
        patched_this_launch.clear()  # the launch patches the language afresh, then restores it
        try:
            return run_launch(self, *args, **kwargs)
        finally:
            patched_this_launch.clear()

    call_helper.skips_repeated_patching = True
    helper_class.__call__ = call_helper
    launch_class.__call__ = launch
    return True
