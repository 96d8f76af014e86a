# pyfiber's lldb helper: `frame variable v` of a pyfiber Value shows what
# Python's repr() would (`b'HTTP/1.0 200 OK...'`, `None`, `42`, `('a', 1)`).
#
# Why this exists: lldb 14 (Debian 12's) does not understand Rust enums at
# all; a `Value` prints as `{}`. `Value` is `#[repr(u64)]` (see
# src/value.rs), so its layout is fixed: a word-sized tag, then the
# variant's fields, and this summary reads it straight from memory.
#
# Load it with:   command script import tools/lldb/pyfiber.py     (inside rust-lldb)
# or:             rust-lldb -o 'command script import tools/lldb/pyfiber.py' ...
#
# Only the Value summary is here. The gdb helper's verbs (pyfiber bt, tasks,
# step, finish, break) and its Future/Generator/Task printers are gdb-only;
# NOTES.md ("Stepping through yield/send", rust-lldb) says what lldb does
# instead.

import lldb

# The variants of pyfiber::value::Value, in declaration order: the tag.
TAGS = ("None", "Bool", "Int", "Float", "Str", "Bytes", "Tuple", "List", "Object")
WORD = 8
VALUE_SIZE = 24  # tag + two words (tests in src/value.rs pin it)
MAX_ITEMS = 50
MAX_BYTES = 200


def read(process, addr, n):
    err = lldb.SBError()
    data = process.ReadMemory(addr, n, err)
    if not err.Success():
        raise ValueError("cannot read %d bytes at %#x" % (n, addr))
    return data


def word(process, addr):
    return int.from_bytes(read(process, addr, WORD), "little")


def repr_at(process, addr, depth=0):
    """Python's repr() of the Value stored at `addr`."""
    tag = word(process, addr)
    if tag >= len(TAGS):
        return "<not a Value: tag %d>" % tag
    name = TAGS[tag]
    payload = addr + WORD
    if name == "None":
        return "None"
    if name == "Bool":
        return "True" if read(process, payload, 1)[0] else "False"
    if name == "Int":
        return str(int.from_bytes(read(process, payload, WORD), "little", signed=True))
    if name == "Float":
        import struct

        return repr(struct.unpack("<d", read(process, payload, WORD))[0])
    if name == "Object":
        return "<object at %#x>" % (word(process, payload) + 2 * WORD)
    # Rc<str>, Rc<[u8]>, Rc<[Value]>: a fat pointer to the RcInner (two
    # counts, then the data) and the length.
    inner, length = word(process, payload), word(process, payload + WORD)
    data = inner + 2 * WORD
    if name == "Bytes":
        return repr(bytes(read(process, data, min(length, MAX_BYTES)))) + ("..." if length > MAX_BYTES else "")
    if name == "Str":
        return repr(read(process, data, min(length, MAX_BYTES)).decode("utf-8", "replace"))
    if depth > 5:
        return "..."
    items = [repr_at(process, data + i * VALUE_SIZE, depth + 1) for i in range(min(length, MAX_ITEMS))]
    if length > MAX_ITEMS:
        items.append("...")
    if name == "List":
        return "[" + ", ".join(items) + "]"
    return "(" + ", ".join(items) + ("," if length == 1 else "") + ")"


def value_summary(valobj, internal_dict):
    try:
        addr = valobj.GetLoadAddress()
        if addr == lldb.LLDB_INVALID_ADDRESS:
            return "<Value not in memory>"
        return repr_at(valobj.GetProcess(), addr)
    except ValueError as e:
        return "<unreadable: %s>" % e


def __lldb_init_module(debugger, internal_dict):
    debugger.HandleCommand(
        "type summary add -F pyfiber.value_summary -w pyfiber pyfiber::value::Value"
    )
    debugger.HandleCommand("type category enable pyfiber")
    print("pyfiber lldb helper loaded: Value summaries")
