# Python helpers shared by the tests that compare pyfiber with CPython
# (tests/conformance.rs and tests/differential/): both include this file at
# the top of the Python they run, so the two suites print results and
# exceptions the same way and emulate 3.13's close() the same way.
import inspect, sys

def line(e):
    # The last line of a traceback: `Name: message`, or `Name` alone.
    s = str(e)
    return type(e).__name__ + (": " + s if s else "")

def call(label, f, *args):
    try:
        v = f(*args)
    except BaseException as e:
        print(f"{label} !! {line(e)}")
    else:
        print(f"{label} -> {v!r}")

def close313(g):
    # generator.close() as CPython 3.13 defines it: when the body returns a
    # value on GeneratorExit, close() returns that value (3.11 and 3.12 return
    # None). Before 3.13, do what close() does -- CPython's close and
    # throw(GeneratorExit) share the path: close the delegate, then raise
    # GeneratorExit at the yield -- and read the value off the StopIteration
    # that throw() raises.
    if sys.version_info >= (3, 13) or inspect.getgeneratorstate(g) != "GEN_SUSPENDED":
        return g.close()
    # close() raises its GeneratorExit in the caller's frame, chained to the
    # exception the caller is handling; throw() would not chain it.
    exit = GeneratorExit()
    exit.__context__ = sys.exc_info()[1]
    try:
        g.throw(exit)
    except GeneratorExit:
        return None
    except StopIteration as e:
        return e.value
    raise RuntimeError("generator ignored GeneratorExit")
