# pyfiber's gdb helper: the tutorials' view of a stopped pyfiber program.
#
# Why this exists: `bt` in a pyfiber program is long. Between the generator
# body and `main` sit the fiber switch, std's closure shims and panic
# plumbing. The tutorials draw the chain by hand:
#
#     body -> send -> Task.step -> Future.set_result -> selector callback -> loop -> main
#
# `pyfiber bt` prints exactly that chain, one line per frame that matters,
# and marks where the fiber boundary is. `pyfiber tasks` asks the program
# itself (pyfiber::debug::dump) for every Task, its generator chain (like
# Python's gi_yieldfrom) and the Future it waits on.
#
# Load it with:   source tools/gdb/pyfiber.py        (inside rust-gdb)
# or:             rust-gdb -x tools/gdb/pyfiber.py target/debug/examples/generator



import gdb

# Frames that are plumbing, not part of the story.
HIDDEN_PREFIXES = (
    "core::",
    "alloc::",
    "std::",
    "__rust",
    "corosensei::",
    "pyfiber::generator::Inner::",
    "pyfiber::generator::Generator::resume",
    "pyfiber::generator::Generator::send_wire",
    "pyfiber::generator::start_fiber",
    "pyfiber::future::Future::settle",
    "pyfiber::event_loop::EventLoop::run_while",
    "__libc",
    "_start",
)

# What each pyfiber frame is, in the tutorials' words.
ROLES = (
    ("pyfiber::generator::Generator::send", "send: resumes the generator's fiber"),
    ("pyfiber::generator::Generator::next", "next: send(None)"),
    ("pyfiber::generator::Generator::throw", "throw: raises inside the generator"),
    ("pyfiber::generator::Generator::close", "close: throws GeneratorExit"),
    ("pyfiber::generator::Co::yield_from", "yield from: forwards to the sub-generator"),
    ("pyfiber::generator::Generator::forward", "yield from: the send goes straight on to the sub-generator"),
    ("pyfiber::task::Task::step", "Task.step: sends the future's result in"),
    ("pyfiber::task::Task::new", "Task(coro): the first step"),
    ("pyfiber::future::Future::set_result", "Future.set_result: runs the done callbacks"),
    ("pyfiber::future::Future::set_exception", "Future.set_exception: runs the done callbacks"),
    ("pyfiber::event_loop::EventLoop::run_once", "the loop: select() and the ready callbacks"),
    ("pyfiber::event_loop::EventLoop::run_loop", "loop()"),
    ("pyfiber::event_loop::EventLoop::run_until_complete", "loop.run_until_complete"),
)


def short_name(name):
    """Drops generic arguments: `f<T, U>` -> `f`."""
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def is_plumbing(name):
    # pyfiber's own closures are glue (Task.step's done callback, ...), and
    # the C `main` that calls Rust's `main` adds nothing.
    return (name.startswith("pyfiber::") and "{closure" in name) or name == "main"


def role_of(name, on_fiber):
    for prefix, role in ROLES:
        if name.startswith(prefix):
            return role
    last = name.rsplit("::", 1)[-1]
    if not on_fiber and last.startswith("on_"):
        return "selector callback: sets the future's result"
    if not on_fiber and last in ("event_loop", "loop_", "loop", "run_loop"):
        return "event_loop()" if last == "event_loop" else "loop()"
    if "::{closure" in name and not on_fiber:
        return "the closure registered with the selector (or a timer)"
    if on_fiber:
        return "generator body"
    if name.endswith("::main") or name == "main":
        return "main"
    return ""


def chain():
    """The frames of the story, newest first, as (level, name, where, role)
    tuples, with None where a fiber boundary is crossed."""
    rows = []
    frame = gdb.newest_frame()
    level = 0
    on_fiber = True  # until the first boundary is crossed we may be on a fiber
    crossed_any = False
    while frame is not None:
        name = frame.name()
        if frame.type() == gdb.SIGTRAMP_FRAME or (name and "switch_and_link" in name):
            # corosensei links the fiber's stack to its parent through a frame
            # that gdb shows as a signal trampoline.
            if not rows or rows[-1] is not None:
                rows.append(None)
            on_fiber = False
            crossed_any = True
        elif name and not name.startswith(HIDDEN_PREFIXES) and not is_plumbing(name):
            name = short_name(name)
            sal = frame.find_sal()
            where = ""
            if sal.symtab is not None:
                where = "%s:%d" % (sal.symtab.filename, sal.line)
            rows.append((level, name, where, role_of(name, on_fiber)))
        frame = frame.older()
        level += 1
    if not crossed_any:
        # Not inside any generator: nothing ran on a fiber.
        rows = [(lv, n, w, r.replace("generator body", "")) for (lv, n, w, r) in rows]
    return rows


class PyfiberCommand(gdb.Command):
    """pyfiber's view of the stopped program.

    pyfiber bt      the chain body -> send -> Task.step -> set_result -> callback -> loop -> main
    pyfiber tasks   every Task, its generator chain (gi_yieldfrom) and the Future it waits on
    """

    def __init__(self):
        super().__init__("pyfiber", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        gdb.execute("help pyfiber")


class PyfiberBt(gdb.Command):
    """Prints the pyfiber call chain, newest first, with each frame's role."""

    def __init__(self):
        super().__init__("pyfiber bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        for row in chain():
            if row is None:
                gdb.write("    ----- fiber boundary: the generator's own stack above, its caller's below -----\n")
                continue
            level, name, where, role = row
            line = "#%-3d %s" % (level, name)
            if where:
                line += "  at " + where
            if role:
                line += "   <- " + role
            gdb.write(line + "\n")


class PyfiberTasks(gdb.Command):
    """Asks the program for its tasks: pyfiber::debug::dump() (printed on the program's stderr)."""

    def __init__(self):
        super().__init__("pyfiber tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        gdb.execute("call pyfiber::debug::dump()", to_string=True)
        gdb.flush()


PyfiberCommand()
PyfiberBt()
PyfiberTasks()
gdb.write("pyfiber gdb helper loaded: `pyfiber bt`, `pyfiber tasks`\n")

# Quiet the noise a learner does not need while stepping.

