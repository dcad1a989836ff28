"""A cache hint for compiled loops: start loading an array element that will be read soon.

The watershed replays (:mod:`.flooding`) visit pixels in the order of a priority queue, which
jumps across the image: most of their time went into waiting for a pixel's state to arrive
from memory. Asking for the next pixel's neighbourhood while the current one is processed
hides most of that wait. A hint changes no result; it only makes the load earlier.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, array, index):  # pragma: no cover - compiled
    """Hint the CPU to bring ``array[index]`` (a 1D array) into its caches; no effect on
    results, no bounds check (an address outside the array is harmless)."""
    signature = types.void(array, index)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
            "llvm.prefetch")
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(hint, [address, ir.Constant(i32, 0), ir.Constant(i32, 3),
                            ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return signature, codegen
