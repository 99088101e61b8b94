# kudzu-gdb.py: gdb commands for kudzu's green threads, on a live process or
# a core dump.
#
#   info kudzu, kz hubs          every hub: its OS thread, its loop, how many
#                                green threads run, wait, sleep
#   kz threads [--state S] [--name GLOB] [--hub N] [--no-frames]
#                                every green thread: id, name, state, what it
#                                waits on, the frame it parked in
#   kz bt ID|NAME, kz bt all     a green thread's backtrace; all of them,
#                                identical stacks grouped and counted
#   kz select ID|NAME (kz frame) make a parked green thread's frames gdb's
#                                own: bt, frame N, info locals, print work on it
#   kz unselect                  back to the OS thread's own frames
#
# Installed next to libkudzu.so as libkudzu.so.<version>-gdb.py, gdb loads it
# with the library once its directory is on the auto-load safe path:
#     add-auto-load-safe-path /usr/local/lib
# or by hand: source /path/to/kudzu-gdb.py.
#
# Notes.
# A. Only memory is read, never a function called in the inferior: a core
#    dump has no process to call, and a hung process must not be disturbed.
#    The structs are read through libkudzu's debug information (build type
#    RelWithDebInfo or Debug): field names, not offsets, so the sanitizer
#    build's extra fields and any reordering are followed.  Without debug
#    information the commands say so and stop.
# B. The hubs are the process-wide list in hub/monitor.c (the static `mon`,
#    linked through hub->watch.link); each hub's green threads are on
#    hub->all.  A parked green thread's registers are the frame kz__switch
#    pushed at g->sp (hub/switch_x86_64.S): r15, r14, r13, r12, rbx, rbp and
#    the resume address above the floating-point control word; its stack
#    pointer after resuming is g->sp + 64.  The running green thread of a hub
#    (hub->current) has no saved frame: its registers are its OS thread's.
# C. Showing a parked green thread's frames.  gdb's frame 0 always takes its
#    registers from the thread (on a core they cannot be written: "You can't
#    do that without a process to debug"), so the green thread's frames are
#    made the callers of frame 0: an unwinder claims frame 0 of the OS thread
#    while a green thread is selected and gives the saved registers as its
#    caller's.  gdb's own unwinders (DWARF CFI) take it from there, with
#    gdb's own symbolization.  Frame 0 then stays the OS thread's frame: a
#    frame filter names it after the green thread in backtraces, and the
#    green thread's frames are #1 and up.  Frame 0 gets a frame id with
#    stack address 0, so that gdb's check that callers lie above their
#    callees ("previous frame inner to this frame") never compares frames
#    of different stacks.  Caller-saved registers of the green thread were
#    not saved (kz__switch is an ordinary call): gdb shows them <not saved>.
# D. A green thread's id is the low 32 bits of its handle, as kz_dump and
#    the crash reports print it.  Deadlines are kz__now() seconds
#    (CLOCK_MONOTONIC): on a live process on this machine the time left is
#    shown too; a core only has the absolute value.
# E. The runtime's own signals pass through without stopping or printing:
#    SIG60 (SIGRTMAX-4), the time slices of hub/preempt.c, which arrive every
#    5 ms of a busy hub's CPU time and would otherwise stop a debugged
#    program at once; SIG61 (SIGRTMAX-3), which interrupts a blocking call
#    on a worker thread; SIG62 (SIGRTMAX-2), the monitor's backtrace.  They
#    are still passed to the program, where the runtime handles them.

import fnmatch
import struct

import gdb
import gdb.unwinder
from gdb.FrameDecorator import FrameDecorator

# Green thread states: enum kz_state, KZ__S_READY and KZ__S_AWAY (hub/internal.h).
_PENDING, _RUNNING, _BLOCKED, _DONE, _CANCELLED, _READY, _AWAY = 0, 1, 2, 3, 4, 16, 18
# enum kz__wait_kind
_W_NONE, _W_SLEEP, _W_FD, _W_JOIN, _W_SYNC, _W_REMOTE, _W_YIELD = range(7)
_STATES = ("running", "runnable", "pending", "waiting", "sleeping", "done")
_MAX_LIST = 10000000  # a corrupted list in a core must not loop forever
_GROUP_NAMES = 10  # kz bt all names this many green threads of a group


# ---- Reading the runtime's structures (notes A, B) -------------------------


def _type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        raise gdb.GdbError(
            "kudzu: no debug information for %s: build libkudzu with "
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo (or install its debug symbols)" % name)


_offsets = {}


def _offset(t, path):
    """Byte offset of the field path (a dotted name) in struct type t."""
    key = (str(t), path)
    if key not in _offsets:
        _offsets[key] = _field_offset(t, path)
    return _offsets[key]


def _field_offset(t, path):
    off = 0
    for name in path.split("."):
        f = next((f for f in t.strip_typedefs().fields() if f.name == name), None)
        if f is None:
            raise gdb.GdbError("kudzu: struct has no field %s" % path)
        off += f.bitpos // 8
        t = f.type
    return off


def _container(link, t, path):
    """The struct of type t that holds the list link at field path."""
    return gdb.Value(int(link) - _offset(t, path)).cast(t.pointer()).dereference()


def _list(head, t, path, valid=None):
    """The structs of type t on the circular list whose head is the value
    head; valid(struct) tells a real one from memory the core lacks."""
    end = int(head.address)
    link = head["next"]
    n = 0
    try:
        while int(link) != end and n < _MAX_LIST:
            if int(link) == 0:
                raise gdb.MemoryError("a null link")
            s = _container(link, t, path)
            if valid is not None and not valid(s):
                raise gdb.MemoryError("zeros at 0x%x" % int(s.address))
            yield s
            link = link["next"]
            n += 1
    except gdb.MemoryError as e:
        _missing(end, e)


_warned = set()


def _missing(key, e):
    if key in _warned:
        return
    _warned.add(key)
    gdb.write(
        "kudzu: warning: the list goes through memory this %s does not have (%s): what "
        "follows is missing.%s\n" % (
            "core file" if not _live() else "process", e,
            " gcore cannot read stacks with guard regions (MADV_GUARD_INSTALL, Linux >= "
            "6.13): run the program with KUDZU_STACK_GUARD=mprotect, or take the kernel's "
            "core dump" if not _live() else ""))


def _loaded():
    for o in gdb.objfiles():
        if "libkudzu" in (o.filename or "").rsplit("/", 1)[-1]:
            return True
    return False


def _monitor():
    """hub/monitor.c's static `mon`, which holds the list of hubs."""
    syms = []
    try:
        syms = gdb.lookup_static_symbols("mon")
    except AttributeError:  # gdb < 10
        pass
    for s in syms:  # libkudzu's, not a program's own static `mon`
        if s.symtab and s.symtab.filename.endswith("monitor.c") and "libkudzu" in (
                s.symtab.objfile.filename or ""):
            return s.value()
    try:
        return gdb.parse_and_eval("'monitor.c'::mon")
    except gdb.error:
        pass
    if not gdb.selected_inferior().pid:
        raise gdb.GdbError("kudzu: no process and no core file")
    if not _loaded():
        raise gdb.GdbError("kudzu: this program has not loaded libkudzu")
    raise gdb.GdbError(
        "kudzu: libkudzu has no debug information: build it with "
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo (or install its debug symbols)")


def _hubs():
    mon = _monitor()
    return list(_list(mon["hubs"], _type("struct kz__hub"), "watch.link"))


def _greens(hub):
    addr = int(hub.address)
    return list(_list(hub["all"], _type("struct kz_green"), "all",
                      lambda g: int(g["hub"]) == addr))


def _gid(g):
    return int(g["id"]) & 0xFFFFFFFF


def _name(g):
    try:
        n = g["name"].string(length=16).split("\0", 1)[0]
    except (gdb.error, UnicodeDecodeError):
        n = ""
    return n or "green-%u" % _gid(g)


def _is_current(g):
    return int(g["hub"]["current"]) == int(g.address)


def _state(g):
    """One of _STATES (running: the hub's current green thread)."""
    s = int(g["state"])
    if s == _RUNNING and _is_current(g):
        return "running"
    if s in (_READY, _RUNNING):
        return "runnable"  # on the run queue (RUNNING: popped, about to run)
    if s == _PENDING:
        return "pending"
    if s == _BLOCKED:
        return "sleeping" if int(g["waiting"]["kind"]) == _W_SLEEP else "waiting"
    if s == _AWAY:
        return "waiting"  # in a system call on the OS thread its hub left (hub/handoff.c)
    return "done"


def _state_matches(state, wanted):
    w = wanted.lower()
    return state == w or (w == "blocked" and state in ("waiting", "sleeping")) or (
        w == "ready" and state == "runnable")


def _os_thread(hub):
    """gdb's thread for the hub's OS thread, or None."""
    tid = int(hub["watch"]["tid"])
    for t in gdb.selected_inferior().threads():
        if t.ptid[1] == tid:
            return t
    return None


def _live():
    try:
        c = gdb.selected_inferior().connection
        return c is not None and c.type == "native"
    except AttributeError:
        return False


def _deadline(t):
    if _live():
        import time

        return "%.3f s left" % (t - time.monotonic())
    return "at %.3f s (CLOCK_MONOTONIC)" % t


def _all_greens():
    for n, hub in enumerate(_hubs(), 1):
        for g in _greens(hub):
            yield n, hub, g


def _find(arg):
    """The green thread named by arg (its id, or its name if unique)."""
    arg = arg.strip()
    if not arg:
        raise gdb.GdbError("kudzu: which green thread? (an id, or a name)")
    by_id = int(arg, 0) if arg.isdigit() or arg.startswith("0x") else None
    found = [(n, h, g) for n, h, g in _all_greens()
             if (by_id is not None and _gid(g) == by_id) or (by_id is None and _name(g) == arg)]
    if not found:
        raise gdb.GdbError("kudzu: no green thread %s" % arg)
    if len(found) > 1:
        raise gdb.GdbError("kudzu: %d green threads are named %s: use an id" % (len(found), arg))
    return found[0]


_handles = {}  # handle -> green thread, filled once per command (_begin)


def _begin():
    """Each command starts from the inferior as it is now."""
    _handles.clear()


def _green_by_handle(h):
    if not _handles:
        _handles.update((int(g["id"]), g) for _, _, g in _all_greens())
        _handles.setdefault(0, None)  # filled, even if empty
    return _handles.get(h)


def _sync_detail(what, addr):
    """What a lock or queue at addr says about itself (its struct is in sync.c
    or queue.c: read if gdb knows it)."""
    try:
        if what == "mutex":
            m = gdb.Value(addr).cast(gdb.lookup_type("struct kz_mutex").pointer()).dereference()
            owner = int(m["state"]) & ~1  # the holder | QUEUED (sync.c, note D)
            if owner:
                o = gdb.Value(owner).cast(_type("struct kz_green").pointer()).dereference()
                return ", held by %u \"%s\"" % (_gid(o), _name(o))
            return ", not held"
        if what.startswith("queue"):
            q = gdb.Value(addr).cast(gdb.lookup_type("struct kz_queue").pointer()).dereference()
            return ", %d items" % int(q["n"])
    except gdb.error:
        pass
    return ""


def _waits_on(g):
    if int(g["state"]) not in (_BLOCKED, _AWAY):
        return "-"
    w = g["waiting"]
    kind, arg, arg2 = int(w["kind"]), int(w["arg"]), int(w["arg2"])
    what = w["what"].string() if int(w["what"]) else ""
    if kind == _W_SLEEP:
        return "sleep, " + _deadline(float(g["until"]))
    if kind == _W_FD:
        d = "+".join(x for b, x in ((1, "read"), (2, "write")) if arg2 & b)
        s = "fd %d %s" % (arg, d or "?")
    elif kind == _W_JOIN:
        t = _green_by_handle(arg2)
        s = "join %u" % (arg2 & 0xFFFFFFFF) + (" \"%s\"" % _name(t) if t is not None else "")
    elif kind == _W_SYNC:
        s = (what or "sync") + (" 0x%x%s" % (arg2, _sync_detail(what, arg2)) if arg2 else "")
    elif kind == _W_REMOTE:
        s = "another OS thread" + (": " + what if what else "")
    else:
        s = "parked"
    if int(g["timer"]["active"]):
        s += ", timeout " + _deadline(float(g["until"]))
    return s


_SLOTS = ("KZ__SW_R15", "KZ__SW_R14", "KZ__SW_R13", "KZ__SW_R12", "KZ__SW_RBX",
          "KZ__SW_RBP", "KZ__SW_RIP", "KZ__SW_WORDS")
_REGS = ("r15", "r14", "r13", "r12", "rbx", "rbp", "rip")


def _slots():
    """The word index of each saved register (hub/switch.h's enum, from the
    debug information; its values today if gdb does not have them)."""
    if "slots" not in _offsets:
        try:
            _offsets["slots"] = [int(gdb.parse_and_eval(n)) for n in _SLOTS]
        except gdb.error:
            _offsets["slots"] = [1, 2, 3, 4, 5, 6, 7, 8]
    return _offsets["slots"]


def _saved_regs(g):
    """The registers kz__switch saved on a parked green thread's stack (note B)."""
    sp = int(g["sp"])
    idx = _slots()
    words = idx[-1]
    w = struct.unpack("<%dQ" % words, bytes(gdb.selected_inferior().read_memory(sp, 8 * words)))
    regs = dict((r, w[i]) for r, i in zip(_REGS, idx))
    regs["rsp"] = sp + 8 * words
    return regs


# ---- Presenting a parked green thread's frames (note C) --------------------


class _FrameId(object):
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _Target(object):
    """The green thread whose frames follow frame 0 of one gdb thread."""

    def __init__(self, thread, g, regs):
        self.thread = thread.global_num
        self.gid = _gid(g)
        self.label = "green %u \"%s\"" % (_gid(g), _name(g))
        self.regs = regs


class _Unwinder(gdb.unwinder.Unwinder):
    def __init__(self):
        super(_Unwinder, self).__init__("kudzu")
        self.target = None

    def __call__(self, pending):
        t = self.target
        if t is None or pending.level() != 0:
            return None
        th = gdb.selected_thread()
        if th is None or th.global_num != t.thread:
            return None
        try:
            u64 = gdb.lookup_type("unsigned long")
            ptr = gdb.lookup_type("void").pointer()
            info = pending.create_unwind_info(
                _FrameId(gdb.Value(0).cast(ptr), pending.read_register("pc")))
            for reg, v in t.regs.items():
                info.add_saved_register(reg, gdb.Value(v).cast(u64))
            return info
        except gdb.error:
            return None  # gdb's own unwinders take frame 0 as usual


class _Frame0(FrameDecorator):
    def __init__(self, base, label):
        super(_Frame0, self).__init__(base)
        self.label = label

    def function(self):
        return "<OS thread's frame; %s follows>" % self.label

    def filename(self):
        return None

    def line(self):
        return None

    def frame_args(self):
        return None

    def frame_locals(self):
        return None


class _FrameFilter(object):
    def __init__(self):
        self.name = "kudzu"
        self.enabled = True
        self.priority = 100

    def filter(self, frames):
        t = _unwinder.target
        th = gdb.selected_thread()
        if t is None or th is None or th.global_num != t.thread:
            return frames
        return self._rename(frames, t.label)

    @staticmethod
    def _rename(frames, label):
        for f in frames:
            yield _Frame0(f, label) if f.inferior_frame().level() == 0 else f


_unwinder = _Unwinder()


def _set_target(t):
    _unwinder.target = t
    gdb.invalidate_cached_frames()


class _Kept(object):
    """with _Kept(): put the selection (green thread, gdb thread, frame) back
    on the way out, whatever the body selected."""

    def __enter__(self):
        self.target = _unwinder.target
        self.thread = gdb.selected_thread()
        try:
            self.level = gdb.selected_frame().level()
        except gdb.error:
            self.level = 0
        return self

    def __exit__(self, *exc):
        if self.thread is not None and self.thread.is_valid():
            self.thread.switch()
        _set_target(self.target)
        _select_level(self.level)
        return False


def _select_level(level):
    try:
        f = gdb.newest_frame()
        while f is not None and f.level() < level:
            f = f.older()
        if f is not None:
            f.select()
    except gdb.error:
        pass


def _frames(first, limit=64):
    out = []
    f = first
    while f is not None and len(out) < limit:
        out.append(f)
        try:
            f = f.older()
        except gdb.error:
            break
    return out


def _in_runtime(frame):
    lib = gdb.solib_name(frame.pc()) or ""
    return lib.rsplit("/", 1)[-1].startswith("libkudzu")


def _describe(frame):
    name = frame.name() or "??"
    sal = frame.find_sal()
    if sal.symtab is not None and sal.line:
        return "%s at %s:%d" % (name, sal.symtab.filename.rsplit("/", 1)[-1], sal.line)
    lib = gdb.solib_name(frame.pc())
    return name + (" from %s" % lib.rsplit("/", 1)[-1] if lib else "")


def _green_frames(hub, g, limit=64):
    """g's frames, innermost first (gdb.Frame objects, valid until the frame
    cache changes: use them inside _with_green)."""
    f = gdb.newest_frame()
    return _frames(f if _is_current(g) else f.older(), limit)


def _fn_name(g):
    """The name of g's body function."""
    fn = int(g["fn"])
    try:
        return gdb.block_for_pc(fn).function.name
    except (AttributeError, RuntimeError, gdb.error):
        return "0x%x" % fn


class _NotStarted(gdb.GdbError):
    def __init__(self, g):
        super(_NotStarted, self).__init__("not started: will run %s" % _fn_name(g))


def _with_green(hub, g, fn):
    """fn() with g's frames reachable from gdb.newest_frame() of the selected
    thread: its OS thread's own if g is running there, else from frame 1."""
    with _Kept():
        if _is_current(g):
            t = _os_thread(hub)
            if t is None:
                raise gdb.GdbError("kudzu: the OS thread of green %u is not in this process" % _gid(g))
            t.switch()
            _set_target(None)
            return fn()
        if int(g["state"]) == _PENDING:
            raise _NotStarted(g)
        if int(g["sp"]) == 0:
            raise gdb.GdbError("kudzu: green %u has no saved context" % _gid(g))
        th = gdb.selected_thread()
        if th is None:
            raise gdb.GdbError("kudzu: no thread to show it on")
        _set_target(_Target(th, g, _saved_regs(g)))
        return fn()


def _parked_in(hub, g):
    """The innermost frame of g outside libkudzu (where the program parked)."""
    def first():
        preempted = False
        for f in _green_frames(hub, g, 32):
            if f.type() == gdb.SIGTRAMP_FRAME:
                preempted = True  # the slice signal's frame (hub/preempt.c)
            elif not _in_runtime(f):
                return _describe(f) + (" (preempted)" if preempted else "")
        return "(the runtime's own: %s)" % _fn_name(g)
    try:
        return _with_green(hub, g, first)
    except _NotStarted as e:
        return "(%s)" % e
    except (gdb.error, gdb.GdbError, gdb.MemoryError):
        return "?"


# ---- Commands ---------------------------------------------------------------


def _hub_line(n, hub):
    t = _os_thread(hub)
    cur = int(hub["current"])
    if cur:
        g = gdb.Value(cur).cast(_type("struct kz_green").pointer()).dereference()
        loop = "running green %u \"%s\"" % (_gid(g), _name(g))
    elif bool(hub["in_loop"]):
        loop = "polling in libev"
    else:
        loop = "on the hub context"
    counts = dict.fromkeys(_STATES, 0)
    for g in _greens(hub):
        counts[_state(g)] += 1
    return ("hub %d at 0x%x: OS thread %d%s, %s%s, %d loop passes\n"
            "    %d green threads: %d running, %d runnable, %d pending, %d waiting, %d sleeping"
            % (n, int(hub.address), int(hub["watch"]["tid"]),
               " (gdb thread %d)" % t.num if t is not None else "", loop,
               ", stopping" if bool(hub["stopping"]) else "", int(hub["pass"]),
               sum(counts.values()), counts["running"], counts["runnable"], counts["pending"],
               counts["waiting"], counts["sleeping"]))


def _cmd_hubs():
    hubs = _hubs()
    if not hubs:
        gdb.write("kudzu: no hub (no green thread has run yet)\n")
    for n, hub in enumerate(hubs, 1):
        gdb.write(_hub_line(n, hub) + "\n")


class InfoKudzu(gdb.Command):
    """Every kudzu hub: its OS thread, its loop, its green threads by state."""

    def __init__(self):
        super(InfoKudzu, self).__init__("info kudzu", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        _begin()
        _cmd_hubs()


class Kz(gdb.Command):
    """kudzu's green threads: kz hubs, kz threads, kz bt, kz select, kz unselect."""

    def __init__(self):
        super(Kz, self).__init__("kz", gdb.COMMAND_USER, gdb.COMPLETE_NONE, True)


class KzHubs(gdb.Command):
    """Every kudzu hub: its OS thread, its loop, its green threads by state."""

    def __init__(self):
        super(KzHubs, self).__init__("kz hubs", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        _begin()
        _cmd_hubs()


class KzThreads(gdb.Command):
    """List green threads: kz threads [--state S] [--name GLOB] [--hub N] [--no-frames]
States: running, runnable, pending, waiting, sleeping (blocked: both).
Columns: id, hub, state, name, what it waits on, the frame it parked in (the
innermost one outside libkudzu; --no-frames leaves it out, which is much
faster with many thousands of green threads).  * marks a green thread
selected with kz select."""

    def __init__(self):
        super(KzThreads, self).__init__("kz threads", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        _begin()
        argv = gdb.string_to_argv(arg)
        state = name = hubn = None
        frames = "--no-frames" not in argv
        argv = [a for a in argv if a != "--no-frames"]
        i = 0
        while i < len(argv):
            a = argv[i]
            if a in ("--state", "--name", "--hub") and i + 1 < len(argv):
                if a == "--state":
                    state = argv[i + 1]
                    if not any(_state_matches(s, state) for s in _STATES):
                        raise gdb.GdbError("kudzu: no state %s (%s, blocked)" % (state, ", ".join(_STATES)))
                elif a == "--name":
                    name = argv[i + 1]
                else:
                    hubn = int(argv[i + 1])
                i += 2
            else:
                raise gdb.GdbError("usage: kz threads [--state S] [--name GLOB] [--hub N] [--no-frames]")
        sel = _unwinder.target.gid if _unwinder.target is not None else None
        rows = []
        for n, hub, g in _all_greens():
            st = _state(g)
            if state and not _state_matches(st, state):
                continue
            if name and not fnmatch.fnmatchcase(_name(g), name):
                continue
            if hubn is not None and n != hubn:
                continue
            rows.append(("*" if _gid(g) == sel else " ", str(_gid(g)), str(n), st, _name(g),
                         _waits_on(g), _parked_in(hub, g) if frames else ""))
        if not rows:
            gdb.write("kudzu: no green thread matches\n")
            return
        head = (" ", "ID", "HUB", "STATE", "NAME", "WAITS ON", "PARKED IN" if frames else "")
        w = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
        for r in [head] + rows:
            gdb.write(("%s %*s %*s  %-*s  %-*s  %-*s  %s" % (
                r[0], w[1], r[1], w[2], r[2], w[3], r[3], w[4], r[4], w[5], r[5], r[6])).rstrip()
                + "\n")


class KzBt(gdb.Command):
    """Backtrace of a green thread: kz bt ID|NAME [BT-ARGS], or kz bt all.
A parked green thread's frames are unwound from the context it saved, with
gdb's own unwinders and symbols; they are numbered from #1 (frame #0 is the
OS thread's own).  kz bt all groups identical stacks and counts them."""

    def __init__(self):
        super(KzBt, self).__init__("kz bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        _begin()
        argv = gdb.string_to_argv(arg)
        if not argv:
            raise gdb.GdbError("usage: kz bt ID|NAME|all")
        if argv[0] == "all":
            return self._all()
        n, hub, g = _find(argv[0])
        extra = " ".join(argv[1:])
        gdb.write("green %u \"%s\" (hub %d) %s: %s\n" % (_gid(g), _name(g), n, _state(g), _waits_on(g)))
        try:
            out = _with_green(hub, g, lambda: gdb.execute("backtrace " + extra, to_string=True))
        except _NotStarted as e:
            out = "    (%s)\n" % e
        if not _is_current(g):
            out = _drop_frame0(out)
        gdb.write(out)

    @staticmethod
    def _all():
        groups = {}
        order = []
        for n, hub, g in _all_greens():
            def key():
                fs = _green_frames(hub, g)
                return tuple(f.pc() for f in fs), ["#%-2d %s" % (f.level(), _describe(f)) for f in fs]
            try:
                pcs, lines = _with_green(hub, g, key)
            except _NotStarted as e:
                pcs, lines = ("pending", int(g["fn"])), ["(%s)" % e]
            except (gdb.error, gdb.GdbError, gdb.MemoryError) as e:
                pcs, lines = ("error", str(e)), ["(%s)" % e]
            if pcs not in groups:
                groups[pcs] = (lines, [])
                order.append(pcs)
            groups[pcs][1].append("%u \"%s\" %s" % (_gid(g), _name(g), _state(g)))
        for pcs in sorted(order, key=lambda k: -len(groups[k][1])):
            lines, members = groups[pcs]
            shown = ", ".join(members[:_GROUP_NAMES])
            if len(members) > _GROUP_NAMES:
                shown += ", and %d more" % (len(members) - _GROUP_NAMES)
            gdb.write("%d green thread%s: %s\n" % (len(members), "" if len(members) == 1 else "s",
                                                  shown))
            for l in lines:
                gdb.write("    %s\n" % l)
            gdb.write("\n")


def _drop_frame0(out):
    """gdb's backtrace text without frame #0 (the OS thread's own, note C)."""
    lines = out.splitlines(True)
    i = 0
    if lines and lines[0].startswith("#0"):
        i = 1
        while i < len(lines) and not lines[i].startswith("#"):
            i += 1
    return "".join(lines[i:])


class KzSelect(gdb.Command):
    """Make a green thread's frames gdb's: kz select ID|NAME.
Switches to its hub's OS thread.  A parked green thread's frames become the
callers of frame #0 (the OS thread's own), so bt, frame N, up, down,
info locals and print work on them; frame #1 is selected.  kz unselect, or
resuming the process, goes back."""

    def __init__(self, name="kz select"):
        super(KzSelect, self).__init__(name, gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        _begin()
        n, hub, g = _find(arg)
        t = _os_thread(hub)
        if t is not None:
            t.switch()
        if _is_current(g):
            _set_target(None)
            gdb.write("[green %u \"%s\" is running on OS thread %d: its frames are the thread's]\n"
                      % (_gid(g), _name(g), int(hub["watch"]["tid"])))
            gdb.execute("frame 0")
            return
        if int(g["state"]) == _PENDING:
            raise gdb.GdbError("kudzu: green %u has no frames yet (%s)" % (_gid(g), _NotStarted(g)))
        if int(g["sp"]) == 0:
            raise gdb.GdbError("kudzu: green %u has no saved context" % _gid(g))
        th = gdb.selected_thread()
        _set_target(_Target(th, g, _saved_regs(g)))
        gdb.write("[green %u \"%s\" %s on thread %d; its frames are #1 and up; kz unselect to go back]\n"
                  % (_gid(g), _name(g), _state(g), th.num))
        gdb.newest_frame().older().select()
        gdb.execute("frame")


class KzUnselect(gdb.Command):
    """Back to the OS thread's own frames after kz select."""

    def __init__(self):
        super(KzUnselect, self).__init__("kz unselect", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        if _unwinder.target is None:
            gdb.write("kudzu: no green thread is selected\n")
            return
        _set_target(None)
        gdb.execute("frame 0")


def _on_resume(event):
    if _unwinder.target is not None:
        _set_target(None)  # the saved context is stale once the process runs


def _on_new_program(event):
    _offsets.clear()  # another build of libkudzu may lay its structs out otherwise
    _warned.clear()
    _unwinder.target = None


def _register():
    InfoKudzu()
    Kz()
    KzHubs()
    KzThreads()
    KzBt()
    KzSelect()
    KzSelect("kz frame")
    KzUnselect()
    gdb.unwinder.register_unwinder(None, _unwinder, replace=True)
    gdb.frame_filters["kudzu"] = _FrameFilter()
    for sig in ("SIG60", "SIG61", "SIG62"):  # note E
        gdb.execute("handle %s nostop noprint pass" % sig, to_string=True)
    # Sourced again (another libkudzu loaded, or by hand): one handler each.
    for registry, name, fn in ((gdb.events.cont, "_kudzu_on_resume", _on_resume),
                               (gdb.events.exited, "_kudzu_on_exit", _on_new_program),
                               (gdb.events.new_objfile, "_kudzu_on_objfile", _on_new_program)):
        old = getattr(gdb, name, None)
        if old is not None:
            registry.disconnect(old)
        registry.connect(fn)
        setattr(gdb, name, fn)


_register()
