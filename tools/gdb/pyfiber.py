# pyfiber's gdb helper: the tutorials' view of a stopped pyfiber program.
#
# Why this exists: gdb shows Rust, a learner thinks in Python. Between a
# generator body and `main` sit the fiber switch, std's closure shims and
# panic plumbing; a `Value` prints as Rust enum internals; `step` from a
# `send` wanders through core, alloc and corosensei for a hundred steps. The
# tutorials draw the chain by hand:
#
#     body -> send -> Task.step -> Future.set_result -> selector callback -> loop -> main
#
# This file gives gdb the verbs of CPython's own gdb extension
# (Tools/gdb/libpython.py: py-bt, py-print) and of pdb (`step` at
# `g.send(x)` lands in the generator's body):
#
#   pyfiber bt       the chain above, one line per frame that matters
#   pyfiber tasks    every Task, its generator chain (gi_yieldfrom), the Future it waits on
#   pyfiber step     from a send/throw/close/next (or Task.step): into the body, on the
#                    line after its pending yield (its first line on a first send)
#   pyfiber finish   from inside a body: run to its next yield, show what it yielded
#                    and where the sender stands
#   pyfiber break    send|throw|close|next|yield|yield_from|step|set_result|
#                    add_done_callback|FUNCTION: every instance at once
#
# and, once loaded: skip rules so that plain `step` stays out of core, alloc,
# std and corosensei; pretty-printers so that `print v` shows what Python's
# repr() would (`b'HTTP/1.0 200 OK...'`, `None`, `('a', 1)`,
# `<Future-7 pending>`, `<generator object fetch ...>`, `<Task-3 pending,
# waiting on Future-7>`); and `set print finish off` (see below).
#
# Load it with:   source tools/gdb/pyfiber.py        (inside rust-gdb)
# or:             rust-gdb -x tools/gdb/pyfiber.py --args target/debug/examples/generator

import re

import gdb

# ---------------------------------------------------------------- pyfiber bt

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
    if not on_fiber and last in ("loop_", "loop", "run_loop", "event_loop"):
        return "loop()"
    if "::{closure" in name and not on_fiber:
        return "the closure registered with the selector (or a timer)"
    if on_fiber:
        return "generator body"
    if name.endswith("::main") or name == "main":
        return "main"
    return ""


def is_boundary(frame):
    """corosensei links a fiber's stack to its parent through a frame that
    gdb shows as a signal trampoline (`<signal handler called>`)."""
    name = frame.name()
    return frame.type() == gdb.SIGTRAMP_FRAME or bool(name and "switch_and_link" in name)


def chain():
    """The frames of the story, newest first, as (level, name, where, role)
    tuples, with None where a fiber boundary is crossed."""
    rows = []
    frame = gdb.newest_frame()
    level = 0
    # On a fiber until the first boundary is crossed, if there is one.
    on_fiber = False
    probe = frame
    while probe is not None:
        if is_boundary(probe):
            on_fiber = True
            break
        probe = probe.older()
    crossed_any = False
    while frame is not None:
        name = frame.name()
        if is_boundary(frame):
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


def require_process():
    """A clear message instead of gdb's `No registers.` when nothing runs."""
    if gdb.selected_inferior().pid == 0:
        raise gdb.GdbError("pyfiber: the program is not running (type `run` first)")
    try:
        gdb.newest_frame()
    except gdb.error:
        raise gdb.GdbError("pyfiber: the program is not stopped in a frame (no registers)")


class PyfiberCommand(gdb.Command):
    """pyfiber's view of the stopped program.

    pyfiber bt       the chain body -> send -> Task.step -> set_result -> callback -> loop -> main
    pyfiber tasks    every Task, its generator chain (gi_yieldfrom) and the Future it waits on
    pyfiber step     run into the generator body being sent to, to the line after its yield
    pyfiber finish   run the current body to its next yield; show what it yielded and the sender
    pyfiber break    WHAT: send, throw, close, next, yield, yield_from, step, set_result,
                     add_done_callback, or any function name: breakpoints on every instance
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
        require_process()
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
    """Every Task of the thread that last made one, its generator chain (gi_yieldfrom) and the Future it waits on."""

    def __init__(self):
        super().__init__("pyfiber tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        require_process()
        # Read from memory, as pyfiber::debug::describe() would print it. A
        # `call pyfiber::debug::dump()` prints the same, but gdb must then
        # restore every register, and gdb 13 cannot write the vector
        # registers back on a CPU with AMX (see pyfiber::task::LIVE_AT).
        try:
            text = tasks_text()
        except NoVariables:
            # A release build (`debug = 1`) has no types to read with: ask
            # the program, which prints on its stderr.
            try:
                gdb.execute("call pyfiber::debug::dump()", to_string=True)
            except gdb.error as e:
                if "extended state" not in str(e):
                    raise
                raise gdb.GdbError(
                    "pyfiber tasks: the list above is the program's own (pyfiber::debug::dump()), "
                    "but afterwards gdb could not restore the vector registers: this gdb cannot "
                    "write them on a CPU with AMX (gdb 14 can). The program may misbehave if "
                    "continued. This release build has no types for reading the tasks from "
                    "memory instead; a debug build (cargo build --example NAME) has them."
                )
            gdb.flush()
            return
        gdb.write(text)
        gdb.flush()


class NoVariables(gdb.GdbError):
    """The program has no debug info for variables (a release build)."""


def anchored(name):
    """What the `AtomicPtr` static `name` points at (the thread-local
    registries' addresses, pyfiber::task::LIVE_AT), or None before any Task."""
    sym = gdb.lookup_static_symbol(name) or gdb.lookup_global_symbol(name)
    if sym is None:
        raise NoVariables("pyfiber tasks: no %s in this program's debug info" % name)
    ptr = cell(sym.value()["p"])
    if int(ptr) == 0:
        return None
    return ptr.dereference()


def provider_children(v):
    """The elements rust-gdb's pretty-printer lists for a Vec or BTreeMap."""
    vis = gdb.default_visualizer(v)
    if vis is None or not hasattr(vis, "children"):
        raise gdb.GdbError("pyfiber tasks: needs rust-gdb's pretty-printers (run rust-gdb, not gdb)")
    return [child for _, child in vis.children()]


def value_str(v):
    """Python's str() of a Value: a str's own text, else its repr()."""
    name, inner = variant(v)
    if name == "Str":
        addr, n = rc_slice(inner["__0"])
        return gdb.selected_inferior().read_memory(addr, n).tobytes().decode("utf-8", "replace")
    return value_repr(v)


def exception_line(e):
    """`Exception::line()`: `ValueError: boom`, or the name alone."""
    obj = rc_value(e["obj"])
    name = rust_str(obj["class"].dereference()["name"])
    on, ov = variant(obj["os"])
    if on == "Some":
        en, ev = variant(ov["__0"]["errno"])
        if en == "Some":
            return "%s: [Errno %d] %s" % (name, int(ev["__0"]), rust_str(ov["__0"]["strerror"]))
    args = exception_args(obj)
    if not args:
        return name
    if len(args) == 1:
        msg = value_repr(args[0]) if name == "KeyError" else value_str(args[0])
    else:
        msg = "(" + ", ".join(value_repr(a) for a in args) + ")"
    return "%s: %s" % (name, msg) if msg else name


def short_repr(v):
    """pyfiber::future::short_repr: repr() cut to 57 characters past 60."""
    r = value_repr(v)
    if len(r) <= 60:
        return r
    name, inner = variant(v)
    n = rc_slice(inner["__0"])[1] if name == "Bytes" else len(r)
    return "%s... (%d bytes)" % (r[:57], n)


def future_line(f):
    """debug.rs's describe_future: `Future-7 (pending)`, `Future-7 (done: b'')`."""
    fid, exc, result = future_state(f)
    if exc is None and result is None:
        return "Future-%d (pending)" % fid
    return "Future-%d (done: %s)" % (fid, exception_line(exc) if exc is not None else short_repr(result))


def chain_lines(g, indent):
    """describe_chain: the generator, then what it delegates to, one per line."""
    inner = rc_value(g["__0"])
    tag = enum_tag(cell(inner["state"]))
    lines = ["%s%s [%s]" % (" " * indent, generator_name(inner), GEN_STATES.get(tag, tag))]
    yn, yv = variant(cell(inner["yieldfrom"]))
    if yn == "Some":
        tn, tv = variant(yv["__0"])
        head = " " * indent + "  yield from → "
        if tn == "Generator":
            sub = chain_lines(tv["__0"], indent + 2)
            lines.append(head + sub[0].lstrip())
            lines.extend(sub[1:])
        elif tn == "Iterator":
            lines.append(head + "<%s object>" % rust_str(tv["__0"]))
        else:
            lines.append(head + "<%s object>" % protocol_type(tv["__0"]))
    return lines


def protocol_type(rc):
    """The Rust type behind an `Rc<dyn Protocol>`, from its vtable's name."""
    tname = trait_vtables("pyfiber::generator::Protocol").get(int(rc_inner(rc)["vtable"]))
    return type_short(tname) if tname is not None else "object"


def tasks_text():
    """pyfiber::debug::describe(), read from the stopped program's memory."""
    out = []
    stepping = anchored("pyfiber::task::STEPPING_AT")
    steps = provider_children(cell(stepping)) if stepping is not None else []
    if steps:
        task, future = steps[-1]["__0"], steps[-1]["__1"]
        inner = rc_value(task["__0"])
        out.append("current: Task-%d (in Task.step)" % int(inner["id"]))
        out.append("  resumed by %s" % future_line(future))
        out.extend(chain_lines(inner["coro"], 2))
    else:
        out.append("current: no Task is stepping (the loop or main is running)")
    live = anchored("pyfiber::task::LIVE_AT")
    entries = provider_children(cell(live)) if live is not None else []
    tasks = []
    for weak in entries[1::2]:  # key, value, key, value...
        rc = weak["ptr"]["pointer"]
        if int(cell(rc.dereference()["strong"])) > 0:
            tasks.append(rc.dereference()["value"])
    out.append("tasks: %d" % len(tasks))
    for inner in tasks:
        on, _ = variant(cell(inner["outcome"]))
        if on == "Some":
            state = "done"
        else:
            wn, wv = variant(cell(inner["waiting_on"]))
            state = "waiting on %s" % future_line(wv["__0"]) if wn == "Some" else "running"
        name = generator_name(rc_value(inner["coro"]["__0"]))
        out.append("  Task-%d %s: %s" % (int(inner["id"]), name, state))
        if on != "Some":
            out.extend(chain_lines(inner["coro"], 4))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ pyfiber break

# The library's names a learner thinks in, and the function each one is.
BREAK_NAMES = {
    "send": "pyfiber::generator::Generator::send",
    "next": "pyfiber::generator::Generator::next",
    "throw": "pyfiber::generator::Generator::throw",
    "close": "pyfiber::generator::Generator::close",
    "yield": "pyfiber::generator::Co::yield_",
    "yield_": "pyfiber::generator::Co::yield_",
    "yield_from": "pyfiber::generator::Co::yield_from",
    "step": "pyfiber::task::Task::step",
    "set_result": "pyfiber::future::Future::set_result",
    "add_done_callback": "pyfiber::future::Future::add_done_callback",
}


def functions_named(name):
    """Every function with debug info whose name is `name`, or ends in
    `::name`, with or without generic arguments: [(full name, file, line)]."""
    if not re.fullmatch(r"[A-Za-z0-9_:]+", name):
        raise gdb.GdbError("pyfiber break: %r is not a function name" % name)
    # gdb's regexes are POSIX basic ones; search for the name, keep the exact
    # matches here.
    wanted = re.compile(r"(^|::)%s(<.*>)?$" % re.escape(name))
    out = gdb.execute("info functions -q %s" % name, to_string=True)
    found, path = [], None
    for text in out.splitlines():
        if text.startswith("File ") and text.endswith(":"):
            path = text[5:-1]
        elif text.startswith("Non-debugging symbols"):
            break
        else:
            m = re.match(r"^(\d+):\s+(?:static\s+)?fn\s+(.+?)\(", text)
            if m and path is not None and wanted.search(m.group(2)):
                found.append((m.group(2), path, int(m.group(1))))
    return found


class PyfiberBreak(gdb.Command):
    """pyfiber break WHAT: a breakpoint on every instance of a function.

    WHAT is send, next, throw, close, yield, yield_from, step, set_result,
    add_done_callback (the library's functions of those names), or any
    function name, qualified as far as you like (`parse`, `Spider::parse`,
    `generator::Spider::parse`): every generic instance and every function
    whose path ends that way gets a location."""

    def __init__(self):
        super().__init__("pyfiber break", gdb.COMMAND_BREAKPOINTS, gdb.COMPLETE_SYMBOL)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        what = arg.strip()
        if not what:
            raise gdb.GdbError("pyfiber break: which function? (send, yield, step, set_result, ... or a name)")
        name = BREAK_NAMES.get(what, what)
        found = functions_named(name)
        if not found:
            raise gdb.GdbError("pyfiber break: no function named %s in the program" % name)
        # One breakpoint per source line: every instance of a generic
        # function shares its source, so `FILE:LINE` finds them all.
        seen = []
        for full, path, line in found:
            if (path, line) in seen:
                continue
            seen.append((path, line))
            bp = gdb.Breakpoint("%s:%d" % (path, line))
            gdb.write("  for %s\n" % short_name(full))


# --------------------------------------------------------------- pyfiber step

MARKERS = ("// gdb: resumed", "// gdb: started")


def generator_source():
    """src/generator.rs as the program was built from it."""
    sym = gdb.lookup_global_symbol("pyfiber::generator::Generator::throw")
    if sym is None or sym.symtab is None:
        raise gdb.GdbError("pyfiber: this program has no debug info for pyfiber::generator")
    return sym.symtab.fullname()


def marker_lines(path):
    """(line, kind) for each line of src/generator.rs that carries a
    `// gdb: ...` marker: where a fiber continues after a switch in. The
    marker is a comment on the line above the code it marks."""
    found = []
    with open(path) as f:
        for number, text in enumerate(f, start=1):
            for kind in MARKERS:
                if kind in text:
                    found.append((number + 1, kind.split()[-1]))
    return found


def in_library(name):
    return name is None or name.startswith(
        ("pyfiber::generator::", "core::", "alloc::", "std::", "corosensei::", "__rust")
    )


class Quiet:
    """Silences the stop reports of a multi-step command for a while: its
    intermediate stops are not for the learner's eyes."""

    def __enter__(self):
        gdb.execute("set suppress-cli-notifications on", to_string=True)

    def __exit__(self, *exc):
        gdb.execute("set suppress-cli-notifications off", to_string=True)
        return False


def step_out_to_body(limit=400):
    """Steps until the newest frame is user code (not the generator machinery)."""
    with Quiet():
        for _ in range(limit):
            if not in_library(gdb.newest_frame().name()):
                return True
            gdb.execute("step", to_string=True)
    return False


class PyfiberStep(gdb.Command):
    """Runs into the generator being resumed, to the line after its pending yield.

    From a stop at or before a send, throw, close or next (or in Task.step):
    continues until the generator's fiber is switched into, and stops in its
    body on the line after the `yield` it was suspended at, or on its first
    line if this is its first send. pdb's `step` at `g.send(x)` does this."""

    def __init__(self):
        super().__init__("pyfiber step", gdb.COMMAND_RUNNING)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        require_process()
        path = generator_source()
        bps = []
        for line, kind in marker_lines(path):
            try:
                gdb.decode_line("%s:%d" % (path, line))
            except gdb.error:
                continue  # that code is not in this program (never called)
            bp = gdb.Breakpoint("%s:%d" % (path, line), internal=True, temporary=False)
            bp.silent = True
            bps.append((bp, kind))
        # The user's own breakpoints wait: one command, one stop (a release
        # build can hit a breakpoint in Task::step twice in one step).
        paused = [b for b in (gdb.breakpoints() or ()) if b.enabled and b.number > 0]
        for b in paused:
            b.enabled = False
        try:
            with Quiet():
                gdb.execute("continue", to_string=True)
        finally:
            for b in paused:
                if b.is_valid():
                    b.enabled = True
            hit = [kind for bp, kind in bps if bp.is_valid() and bp.hit_count > 0]
            for bp, _ in bps:
                if bp.is_valid():
                    bp.delete()
        if gdb.selected_inferior().pid == 0:
            gdb.write("pyfiber step: the program exited before any generator was resumed\n")
            return
        if not hit:
            gdb.write("pyfiber step: the program stopped before any generator was resumed\n")
            gdb.execute("frame")
            return
        if hit[0] == "started":
            # A first send: the body is called through Box<dyn FnOnce>'s
            # shims in core, which the skip rules would step over whole.
            gdb.execute("skip disable", to_string=True)
            try:
                step_out_to_body()
            finally:
                gdb.execute("skip enable", to_string=True)
        else:
            # Out of Co::yield_ (or yield from's loop) into the body: gdb
            # finishes the body's `yield` line and stops on the next one.
            step_out_to_body()
            leave_the_yield_line()
        gdb.execute("frame")


def leave_the_yield_line(limit=20):
    """In a release build `Co::yield_` is inlined, and the first body
    instruction after the switch back can still belong to the yield's own
    statement (`let chunk = co.yield_(...)` storing its result): `next` over
    the rest of that statement, to the line after the yield, as a debug
    build and pdb stop."""
    if gdb.lookup_global_symbol("pyfiber::generator::Co::yield_") is not None:
        return  # out of line (a debug build): `step` already left its line
    sal = gdb.selected_frame().find_sal()
    if sal.symtab is None:
        return
    try:
        with open(sal.symtab.fullname()) as f:
            text = f.readlines()[sal.line - 1]
    except (OSError, IndexError):
        return
    if "yield_" not in text:
        return
    start = sal.line
    with Quiet():
        for _ in range(limit):
            gdb.execute("next", to_string=True)
            if gdb.selected_frame().find_sal().line != start:
                return


# ------------------------------------------------------------- pyfiber finish

SENDERS = (
    "pyfiber::generator::Generator::send",
    "pyfiber::generator::Generator::next",
    "pyfiber::generator::Generator::throw",
    "pyfiber::generator::Generator::close",
    "pyfiber::generator::Generator::forward",
)


def sender_frame():
    """The frame of the send (throw, close, next) that resumed the current
    fiber: the first such frame below the first fiber boundary."""
    frame = gdb.newest_frame()
    crossed = False
    body = None
    while frame is not None:
        if is_boundary(frame):
            crossed = True
        elif not crossed and body is None and not in_library(frame.name()):
            body = frame
        elif crossed and frame.name() and short_name(frame.name()) in SENDERS:
            return body, frame
        frame = frame.older()
    return body, None


class ReturnTo(gdb.Breakpoint):
    """Stops when control is back at `pc` with the stack pointer `sp`: the
    moment a given frame returns to its caller (gdb's `finish`, without the
    return value that gdb 13 cannot print; see `set print finish off`)."""

    def __init__(self, pc, sp):
        super().__init__("*%#x" % pc, internal=True)
        self.silent = True
        self.sp = sp

    def stop(self):
        return int(gdb.newest_frame().read_register("sp")) == self.sp


class YieldSeen(gdb.Breakpoint):
    """Records the value passed to Co::yield_ on the body's own fiber."""

    def __init__(self, body_sp):
        super().__init__("pyfiber::generator::Co::yield_", internal=True)
        self.silent = True
        self.body_sp = body_sp
        self.seen = None

    def stop(self):
        # Only a yield of our body: its frame is older (higher) on the same
        # fiber stack, a few frames up.
        frame = gdb.newest_frame()
        caller = frame.older()
        if caller is None or self.seen is not None:
            return False
        sp = int(caller.read_register("sp"))
        if sp > self.body_sp or self.body_sp - sp > (1 << 20):
            return False
        try:
            value = frame.read_var("value")
            self.seen = (value.format_string(), caller.find_sal())
        except (gdb.error, ValueError):
            self.seen = ("<optimized out>", caller.find_sal())
        return False


class PyfiberFinish(gdb.Command):
    """Runs the current generator body to its next yield and stops in the sender.

    Shows what the body yielded (and at which line), then stops where the
    send (throw, close, next) that resumed it returns: in Task.step, or in
    your own code."""

    def __init__(self):
        super().__init__("pyfiber finish", gdb.COMMAND_RUNNING)

    def invoke(self, arg, from_tty):
        self.dont_repeat()
        require_process()
        body, sender = sender_frame()
        if sender is None or body is None:
            raise gdb.GdbError("pyfiber finish: not inside a generator body (no send below a fiber boundary)")
        caller = sender.older()
        # Stopped inside Co::yield_ itself, before its switch: that is the
        # yield, and its value is right here.
        now = None
        frame = gdb.newest_frame()
        while frame is not None and frame != body:
            if frame.name() == "pyfiber::generator::Co::yield_":
                try:
                    now = (frame.read_var("value").format_string(), frame.older().find_sal())
                except (gdb.error, ValueError):
                    now = ("<optimized out>", frame.older().find_sal())
            frame = frame.older()
        ret = ReturnTo(caller.pc(), int(caller.read_register("sp")))
        seen = YieldSeen(int(body.read_register("sp")))
        try:
            with Quiet():
                gdb.execute("continue", to_string=True)
        finally:
            got = now or seen.seen
            ret_hit = ret.is_valid() and ret.hit_count > 0
            for bp in (ret, seen):
                if bp.is_valid():
                    bp.delete()
        if gdb.selected_inferior().pid == 0:
            gdb.write("pyfiber finish: the program exited before the sender got control back\n")
            return
        if got is not None:
            value, sal = got
            where = "%s:%d" % (sal.symtab.filename, sal.line) if sal.symtab else "?"
            gdb.write("yielded %s  (at %s)\n" % (value, where))
        elif ret_hit:
            gdb.write("the generator finished (it returned or raised instead of yielding)\n")
        if ret_hit:
            gdb.write("the sender stands at:\n")
        gdb.execute("frame")


# ------------------------------------------------------------ pretty-printers


def print_limit():
    try:
        n = gdb.parameter("print elements")
    except gdb.error:
        n = 200
    return n if n else None


def variant(v):
    """A Rust enum value's (variant name, variant value); gdb resolves the
    active variant and lists it as the one named field."""
    fields = [f for f in v.type.fields() if f.name is not None and not f.artificial]
    if not fields:
        return None, None
    return fields[-1].name, v[fields[-1]]


def rc_inner(rc):
    """The `RcInner` an `Rc`/`Weak` points at: (pointer value)."""
    return rc["ptr"]["pointer"]


def rc_value(rc):
    """What an `Rc<T>` holds (T sized)."""
    return rc_inner(rc).dereference()["value"]


def fat_data(fat):
    """The data half of a fat pointer (gdb names it `data_ptr` for slices
    and `pointer` for trait objects)."""
    names = [f.name for f in fat.type.strip_typedefs().fields()]
    return int(fat["data_ptr"] if "data_ptr" in names else fat["pointer"])


def rc_slice(rc):
    """(address of the first element, length) of an `Rc<[T]>` or `Rc<str>`:
    the data sits after the two counts."""
    fat = rc_inner(rc)
    usize = gdb.lookup_type("usize")
    return fat_data(fat) + 2 * usize.sizeof, int(fat["length"])


def cell(v):
    """Cell<T> / RefCell<T> / UnsafeCell<T> -> T."""
    while v.type.strip_typedefs().name and re.match(r"core::cell::(Ref|Unsafe)?Cell<", v.type.strip_typedefs().name):
        v = v["value"]
    return v


def rust_str(v):
    """A `&str` or `String` as a Python string."""
    t = v.type.strip_typedefs()
    if t.name == "&str":
        n = int(v["length"])
        return gdb.selected_inferior().read_memory(int(v["data_ptr"]), n).tobytes().decode("utf-8", "replace")
    # String: Vec<u8> { buf: RawVec { inner: { ptr, ... } }, len }
    vec = v["vec"]
    n = int(vec["len"])
    ptr = find_pointer(vec["buf"])
    return gdb.selected_inferior().read_memory(ptr, n).tobytes().decode("utf-8", "replace")


def find_pointer(v, depth=0):
    """The first raw pointer inside a (nested) struct: a RawVec's buffer."""
    t = v.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_PTR:
        return int(v)
    if depth > 6 or t.code != gdb.TYPE_CODE_STRUCT:
        raise gdb.error("no pointer")
    for f in t.fields():
        if f.name in ("ptr", "pointer", "inner", "buf", "__0") or f.name is None:
            try:
                return find_pointer(v[f], depth + 1)
            except gdb.error:
                continue
    raise gdb.error("no pointer")


def str_repr(s):
    """Python's repr(str)."""
    return repr(s)


def bytes_repr(b):
    """Python's repr(bytes)."""
    return repr(bytes(b))


def float_repr(x):
    return repr(float(x))


def cut(text):
    limit = print_limit()
    if limit is not None and len(text) > limit:
        return text[:limit] + "..."
    return text


GEN_STATES = {
    "Created": "GEN_CREATED",
    "Running": "GEN_RUNNING",
    "Suspended": "GEN_SUSPENDED",
    "Closed": "GEN_CLOSED",
}


def enum_tag(v):
    """The name of a fieldless enum's value (`GenState::Suspended` -> `Suspended`)."""
    return str(v).rsplit("::", 1)[-1]


def type_short(name):
    return short_name(name).rsplit("::", 1)[-1]


def value_repr(v):
    """Python's repr() of a pyfiber::value::Value."""
    name, inner = variant(v)
    if name is None:
        return "None"
    if name == "None":
        return "None"
    payload = inner["__0"]
    if name == "Bool":
        return "True" if bool(payload) else "False"
    if name == "Int":
        return str(int(payload))
    if name == "Float":
        return float_repr(payload)
    if name in ("Str", "Bytes"):
        addr, n = rc_slice(payload)
        limit = print_limit()
        data = gdb.selected_inferior().read_memory(addr, n if limit is None else min(n, limit * 4)).tobytes()
        if name == "Str":
            return str_repr(data.decode("utf-8", "replace"))
        return bytes_repr(data)
    if name in ("Tuple", "List"):
        addr, n = rc_slice(payload)
        size = v.type.strip_typedefs().sizeof
        items = []
        for i in range(min(n, 50)):
            # Read through the expression parser: gdb works out each
            # element's variant only for a value it fetches itself.
            item = gdb.parse_and_eval("*(%d as *const pyfiber::value::Value)" % (addr + i * size))
            items.append(value_repr(item))
        if n > 50:
            items.append("...")
        if name == "List":
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if n == 1 else "") + ")"
    if name == "Object":
        return object_repr(payload)
    return "<%s>" % name


_VTABLES = {}


def trait_vtables(trait):
    """{vtable address: type name} for every `impl trait for T` in the
    program. The vtables have no ELF symbol, but the debug info names each
    one `<T as trait>::{vtable}`."""
    key = (gdb.selected_inferior().pid, trait)
    if key not in _VTABLES:
        found = {}
        # (gdb lists each vtable's type, `...::{vtable_type}`, by that name.)
        out = gdb.execute(r"info variables -q -n as %s>::[{]vtable" % trait, to_string=True)
        names = set(re.findall(r"static <(.+?) as %s>::\{vtable(?:_type)?\};" % re.escape(trait), out))
        for name in sorted(names):
            sym = gdb.lookup_static_symbol("<%s as %s>::{vtable}" % (name, trait))
            if sym is not None:
                found[int(sym.value().address)] = name
        _VTABLES[key] = found
    return _VTABLES[key]


def object_vtables():
    return trait_vtables("pyfiber::value::Object")


def object_repr(rc):
    """repr() of the object in an `Rc<dyn Object>`: its concrete type comes
    from the vtable's symbol, `<T as pyfiber::value::Object>::{vtable}`."""
    fat = rc_inner(rc)
    tname = object_vtables().get(int(fat["vtable"]))
    if tname is None:
        return "<object at %#x>" % fat_data(fat)
    try:
        t = gdb.lookup_type(tname)
    except gdb.error:
        return "<%s object>" % type_short(tname)
    usize = gdb.lookup_type("usize")
    offset = max(2 * usize.sizeof, t.alignof if hasattr(t, "alignof") else 8)
    obj = gdb.Value(fat_data(fat) + offset).cast(t.pointer()).dereference()
    printer = lookup(obj)
    if printer is not None:
        return printer.to_string()
    return "<%s object at %#x>" % (type_short(tname), fat_data(fat) + offset)


def exception_repr(e):
    """Python's repr() of a pyfiber::exception::Exception: an `Rc` of the
    object, whose class is a `&ExceptionClass` (its `name` a `&str`) and
    whose `args` a `Vec<Value>`."""
    obj = rc_value(e["obj"])
    name = rust_str(obj["class"].dereference()["name"])
    return "%s(%s)" % (name, ", ".join(value_repr(a) for a in exception_args(obj)))


def exception_args(obj, limit=20):
    """The first `limit` of an exception object's `args` (a `Vec<Value>`),
    each read through the expression parser (see value_repr's List)."""
    args = obj["args"]
    n = int(args["len"])
    ptr = find_pointer(args["buf"])
    size = gdb.lookup_type("pyfiber::value::Value").sizeof
    return [
        gdb.parse_and_eval("*(%d as *const pyfiber::value::Value)" % (ptr + i * size))
        for i in range(min(n, limit))
    ]


def result_repr(r):
    """`PyResult<Value>`: `Ok(b'...')` or `Err(TimeoutError('timed out'))`."""
    name, inner = variant(r)
    payload = inner["__0"]
    if name == "Ok":
        return "Ok(%s)" % value_repr(payload)
    return "Err(%s)" % exception_repr(payload)


def future_state(f):
    """A Future's (id, exception, result): both None while it is pending."""
    inner = rc_value(f["__0"])
    fid = int(inner["id"])
    if not bool(cell(inner["done"])):
        return fid, None, None
    en, ev = variant(cell(inner["exception"]))
    if en == "Some":
        return fid, ev["__0"], None
    return fid, None, cell(inner["result"])


def future_repr(f):
    fid, exc, result = future_state(f)
    if exc is not None:
        return "<Future-%d finished exception=%s>" % (fid, exception_repr(exc))
    if result is None:
        return "<Future-%d pending>" % fid
    return "<Future-%d finished result=%s>" % (fid, value_repr(result))


def generator_name(inner):
    name, v = variant(inner["name"])
    if name == "Given":
        return rust_str(v["__0"])
    # TypeOf: the body's type name, shortened as Generator::name() does.
    full = rust_str(v["__0"])
    while full.endswith("::{{closure}}"):
        full = full[: -len("::{{closure}}")]
    return full.rsplit("::", 1)[-1]


def location_str(loc):
    """`file:line` of a `&'static core::panic::Location` (std keeps the
    file name as a fat pointer, `filename`, or as a `&str`, `file`, in older
    releases)."""
    loc = loc.dereference()
    names = [f.name for f in loc.type.strip_typedefs().fields()]
    if "filename" in names:
        fat = loc["filename"]["pointer"]
        n = int(fat["length"])
        path = gdb.selected_inferior().read_memory(int(fat["data_ptr"]), n).tobytes().decode("utf-8", "replace")
    else:
        path = rust_str(loc["file"])
    return "%s:%d" % (path, int(loc["line"]))


def suspended_at(inner):
    """`gi_frame`'s line: where a suspended generator's pending yield is
    (`Inner::at`, set at each yield), or None in any other state."""
    if enum_tag(cell(inner["state"])) != "Suspended":
        return None
    try:
        return location_str(cell(inner["at"]))
    except (gdb.error, gdb.MemoryError, KeyError):
        return None  # a program built before gi_frame


def generator_repr(g):
    rc = g["__0"]
    inner = rc_value(rc)
    state = GEN_STATES.get(enum_tag(cell(inner["state"])), enum_tag(cell(inner["state"])))
    at = suspended_at(inner)
    where = " at line %s" % at if at else ""
    return "<generator object %s at %#x %s%s>" % (generator_name(inner), int(rc_inner(rc)), state, where)


def task_repr(t):
    inner = rc_value(t["__0"])
    tid = int(inner["id"])
    name = generator_name(rc_value(inner["coro"]["__0"]))
    on, ov = variant(cell(inner["outcome"]))
    if on == "Some":
        return "<Task-%d finished coro=%s %s>" % (tid, name, result_repr(ov["__0"]))
    wn, wv = variant(cell(inner["waiting_on"]))
    if wn == "Some":
        fid = int(rc_value(wv["__0"]["__0"])["id"])
        at = suspended_at(rc_value(inner["coro"]["__0"]))
        where = ", suspended at %s" % at if at else ""
        return "<Task-%d pending coro=%s, waiting on Future-%d%s>" % (tid, name, fid, where)
    return "<Task-%d pending coro=%s, running (in Task.step)>" % (tid, name)


class Printer:
    def __init__(self, fn, val):
        self.fn, self.val = fn, val

    def to_string(self):
        try:
            return cut(self.fn(self.val))
        except (gdb.error, gdb.MemoryError, KeyError, ValueError, RuntimeError) as e:
            return "<unreadable: %s>" % e


PRINTERS = (
    ("pyfiber::value::Value", value_repr),
    ("pyfiber::exception::Exception", exception_repr),
    ("pyfiber::future::Future", future_repr),
    ("pyfiber::generator::Generator", generator_repr),
    ("pyfiber::task::Task", task_repr),
    ("core::result::Result<pyfiber::value::Value, pyfiber::exception::Exception>", result_repr),
)


def lookup(val):
    t = val.type.strip_typedefs()
    name = t.name
    if name is None:
        return None
    # An enum value's type is its active variant's: `Value::Bytes`.
    for prefix, fn in PRINTERS:
        if name == prefix:
            return Printer(fn, val)
    return None


def install_printers(objfile):
    # First in the objfile's list: rust-gdb's own printers are there too.
    if lookup not in objfile.pretty_printers:
        objfile.pretty_printers.insert(0, lookup)


for _objfile in gdb.objfiles():
    install_printers(_objfile)
gdb.events.new_objfile.connect(lambda event: install_printers(event.new_objfile))
if lookup not in gdb.pretty_printers:
    gdb.pretty_printers.insert(0, lookup)

# ----------------------------------------------------------------- settings

# Plain `step` stays in code a learner wrote or reads: not in the standard
# library, not in corosensei's fiber switch, not in conversions and drops.
SKIPS = (
    r"^core::",
    r"^alloc::",
    r"^std::",
    r"^corosensei::",
    r"^pyfiber::generator::Wire::",
    # (gdb's regexes here are POSIX basic ones: \( \| \) group.)
    r"^pyfiber::.*::[{]impl#[0-9]*[}]::\(from\|into\|clone\|drop\|deref\|fmt\|eq\)",
)
for _regex in SKIPS:
    gdb.execute("skip -rfu %s" % _regex, to_string=True)

# gdb 13.1 dies on an internal error (gdbtypes.h:985, "idx >= 0 && idx <
# num_fields ()") when `finish` prints the return value of a function that
# returns a Rust enum in registers, such as `Value::from` or `Co::yield_`'s
# PyResult<Value>. The bug is gdb's; not printing that value avoids it.
# `print $` right after `finish` shows nothing then; `print` the variable the
# result is assigned to instead, or use `pyfiber finish`.
gdb.execute("set print finish off")

PyfiberCommand()
PyfiberBt()
PyfiberTasks()
PyfiberBreak()
PyfiberStep()
PyfiberFinish()
gdb.write("pyfiber gdb helper loaded: pyfiber bt|tasks|step|finish|break; Python-looking print\n")
