/* patch.c: libc's own calls reach the shim (family "libc").
 *
 * stdio (fgets, getline, fread, fwrite, fflush...), popen streams, syslog,
 * getpass and the rest of libc call read, write, poll, nanosleep, send,
 * connect... without the PLT: _IO_file_read calls __read, syslog calls
 * __send and __connect, sleep calls __nanosleep.  An LD_PRELOAD interposer
 * never sees those calls, so a green thread blocked in fgets on a socket
 * held its hub's OS thread and every other green thread of the hub.
 *
 * So, once at start-up, before the program runs and before any other
 * thread exists, the entry of each such libc function is overwritten with
 * a jump to the shim's interposer of the same name (for a few, to a guard
 * here that then calls it: notes I and J; libc's lock wait leads to a green
 * lock wait: note H).  The instructions the
 * jump overwrites are copied (relocated) into a trampoline, followed by a
 * jump back to the first instruction not copied; kz_real's slot for the
 * function (and libkudzu's, kz__os_divert) then points at the trampoline,
 * so the shim's own "real" call runs libc's original code.  A program's
 * call through the PLT reached the interposer already; now libc's internal
 * callers do too, and outside a green thread the interposer passes the
 * call on at once (KZ_INTERPOSE), so nothing else changes.
 *
 *   libc: read+0: jmp <shim's read>     <- the PLT and __read callers alike
 *         read+5: int3 int3             (the rest of the copied instruction)
 *         read+7: je ...                (untouched from here on)
 *   trampoline: cmpb $0,__libc_single_threaded(%rip)   (displacement fixed)
 *               jmp read+7
 *
 * Notes.
 * A. Why the patched bytes are safe.  The copied instructions are whole
 *    instructions, found with zydis (the entry of the function, up to
 *    the first instruction boundary at or past 5 bytes: in glibc 2.36 one
 *    `cmpb $0x0,__libc_single_threaded(%rip)`, or a push and a mov, or a
 *    sub of %rsp and a mov, or a cmp and a short jcc (rewritten to its
 *    rel32 form, same target), or the _nocancel forms' xor, syscall and
 *    cmp).  They run in the trampoline exactly as they would have in
 *    place, in the same order, on the same registers and stack, so when
 *    the trampoline jumps back into libc the state is the one libc's code
 *    (and its unwind tables) expect at that point.  Only while the
 *    trampoline's own few instructions run is there no unwind information:
 *    nothing unwinds there (no call, no cancellation point; a profiler's
 *    sample, or a backtrace from a signal handler that interrupts the
 *    _nocancel forms' system call, may fail to walk that one frame).
 * B. What is refused (the function is then left as it is, entirely, and
 *    one line on stderr names it): a function whose bytes zydis cannot
 *    decode to its end (the symbol table's size); a copied instruction
 *    that is a call, a return, a loop or jrcxz, or a relative jump other
 *    than jmp/jcc (those are rewritten to their rel32 forms, to the same
 *    target); a RIP-relative operand whose rewritten displacement does not
 *    fit (the trampoline page is placed within reach of libc, so it does);
 *    any direct branch in the function into the copied bytes other than to
 *    the entry (it would land inside the jump); an indirect jump in the
 *    function (its targets cannot be checked).  A function the program
 *    reaches through another library first (kz_real's slot is not libc's
 *    own address) is left alone too: that library's "real" call would
 *    come back to the shim.
 * C. What happens to a thread inside the patched bytes.  There is none:
 *    patching runs in the shim's constructor, before main, before the
 *    runtime starts a hub, worker or monitor thread, and only while libc's
 *    __libc_single_threaded says no thread was ever created (otherwise
 *    nothing is patched, with one line on stderr).  Even so, the five
 *    bytes and their filler are written with one aligned 8-byte store
 *    (glibc aligns functions to 16 bytes), so a concurrent fetch would see
 *    the old instruction or the new jump, never half of each; a thread
 *    suspended at the entry resumes on the jump, one suspended after the
 *    copied instructions resumes on untouched code, and no thread can be
 *    suspended between the two (the copied span is whole instructions and
 *    nothing branches into it, note B).
 * D. Protection: libc's executable segment is made writable
 *    (read-write-execute: libc's own mprotect, which makes the change and
 *    returns into libc, lives on it) for the stores, all of them, then
 *    read-execute again (note L).  A kernel that refuses W+X leaves
 *    libc as it is, with one line on stderr.  The trampolines live in one
 *    page of their own, written and then made read-execute.  The kernel's
 *    copy-on-write keeps the change private to the process (and its
 *    forks); the file on disk and other processes are untouched.
 * E. The jump from libc to the interposer is a rel32 jmp when the shim is
 *    within 2 GiB of libc (the usual case: the loader maps them side by
 *    side), else a jmp to a stub in the trampoline page that jumps through
 *    an absolute address.
 * F. Costs.  Outside a green thread an internal call to a patched function
 *    pays the jump to the interposer, its test of the thread's hub and the
 *    jump to the trampoline and back: a few predicted jumps per system
 *    call, measured in scripts/bench (libc_patch_overhead_ns).  A call
 *    through the PLT pays the trampoline's jump back, once per call.
 *    Start-up pays the decoding of a few functions (libc_patch_startup_us).
 * G. What each patched function's internal callers are (glibc 2.36): read
 *    (stdio's _IO_file_read, getpass, getline/fgets/fread/fscanf on any
 *    FILE), write (_IO_new_file_write: fflush, fputs, printf when the
 *    buffer fills), readv/writev (stdio on some paths, syslog's console
 *    fallback), poll/ppoll/select/pselect (the resolver, getpass's tty
 *    handling, programs' libraries), nanosleep/clock_nanosleep (sleep,
 *    usleep, thrd_sleep), send/sendto/sendmsg/connect (syslog, the
 *    resolver and nscd client, rcmd), recv/recvfrom/recvmsg/accept (the
 *    same), socket (if_nameindex, getifaddrs, the resolver, syslog: libc
 *    closes these sockets itself, where the shim cannot see, so the number
 *    of the next one may still be watched by the hub from a wait of the
 *    last one; seen created, it is forgotten there first: fd.c, note E).  The _nocancel variants of read and write are note J's; the
 *    others (__open_nocancel, __pread64_nocancel...) reach files, which are
 *    always ready, and are left alone.
 * H. libc's internal locks (lll_lock: syslog's, a stream's when another OS
 *    thread holds it, malloc's arenas, and some 250 more) wait in
 *    __lll_lock_wait_private, a futex wait of the whole OS thread.  Once a
 *    green thread may park inside libc while holding one (syslog sends
 *    under its lock, and the send may park), another green thread of the
 *    same hub waiting for that lock in the kernel would never let the
 *    holder run again.  So __lll_lock_wait_private is patched too, to
 *    lock_wait: in a green thread the lock is taken by glibc's own protocol
 *    (exchange with 2), and while it is held the green thread parks in the
 *    shim's wait table under the lock's address (pthread_sync.c).  The
 *    holder's unlock sees the 2 and calls __lll_lock_wake_private, patched
 *    to lock_wake: libc's futex wake, then the table's, from whatever
 *    thread unlocks (a green thread of any hub, a real thread).  So the
 *    waiter runs as soon as the lock is free, never polls (the hand-over
 *    from a real thread took 740 us on average when this was a wait
 *    between parks of 50 us to 1 ms, 55 us now).  If the wake could not be
 *    patched, the short parks remain.
 *    Only the contended path changes: the uncontended lock is inline code
 *    that never calls it.  Only the program's calls wait that way: when the
 *    runtime itself (this library, libkudzu, libev) called the libc
 *    function that waits (malloc and free, whose arena another OS thread
 *    holds), parking there would let another green thread into runtime
 *    code that is half-way through a change (libev growing an array), so
 *    the wait stays libc's.  The first frame outside libc on the stack
 *    (libunwind, on this contended path only) tells who called.  The walk
 *    is the runtime's own call (hub/sched.c, note H): libunwind's own
 *    calls into libc (the pipe it checks addresses with, its mutex,
 *    malloc) go to libc, never to the interposers, so it cannot park, and
 *    a wait it meets itself is libc's.  fork() is the other exception:
 *    glibc takes every malloc arena's lock (and the stream list's) one
 *    after the other before the system call, and holds them until after
 *    it.  A forking green thread that parked waiting for the next arena
 *    (another OS thread allocating from it) held main_arena meanwhile, and
 *    the hub's own context, freeing a finished thread, then waited for
 *    main_arena in the kernel for good.  Between the shim's fork handlers
 *    (kz_shim_forking, preload/thread.c) the waits are libc's: each holder
 *    is another OS thread inside malloc, which lets go at once.
 * I. A stream's lock (_IO_lock_t) is recursive: a thread whose TCB already
 *    owns it enters again.  The green threads of one hub share one OS
 *    thread, so while green thread A waits inside fputs(stdout) (its write
 *    parked, the lock held), green thread B of the same hub would enter
 *    printf on the same stream, and the two would corrupt its buffer.  So
 *    libc's internal read, write, readv and writev lead to guards: in a
 *    green thread, each of stdin, stdout and stderr whose lock this OS
 *    thread holds gets the green thread as its owner for the duration of
 *    the call, and its TCB back after: meanwhile B sees another owner,
 *    waits for the lock (note H) and enters after A unlocks, as natively.
 *    Only the standard streams, the ones threads share: finding any other
 *    stream held would mean walking every open stream on every wait.  Two
 *    green threads of a hub sharing another stream on a pipe or socket
 *    are not kept apart (docs/SHIM.md).
 * J. __read_nocancel and __write_nocancel are separate code that libc
 *    calls where a cancellation point must not be: streams opened with
 *    fopen's "c" flag (getpass's /dev/tty), the nscd client's socket,
 *    files libc reads for itself.  They lead to guards that, in a green
 *    thread, call the read and write interposers with a shield up (no
 *    cancellation, no scoped deadline: neither exists natively there), and
 *    elsewhere libc's own code, so a real thread's nocancel read stays
 *    nocancel.  Their first instructions include the syscall itself,
 *    which runs from the trampoline like any other.
 * K. zydis is needed only while patching: it is loaded with dlopen for
 *    that and unloaded after, not linked.  A library that stays mapped
 *    costs every fork of the program: five more mappings to copy and
 *    tear down (about 0.6 us each), for the life of the process.  If it
 *    cannot be loaded, libc is left as it is, with one line on stderr.
 * L. The whole segment changes protection at once, not the page of each
 *    entry: mprotect of a single page splits libc's text mapping around
 *    it, and the split does not heal when the page is read-execute again
 *    (the kernel now charges it as a private writable mapping, its
 *    neighbours not), so patching one page at a time left libc's text in
 *    a dozen mappings.  Every fork copies and every exit tears down each
 *    mapping, and the fork child's first touch of libc's code faults once
 *    per piece instead of once per 16 pages: the pre-fork server's fork
 *    and exit cost 5 page faults more.  The one mapping holds private
 *    pages, so a fork copies its page table entries (some 250 for the
 *    text a server has run) and the child's exit clears them; in exchange
 *    the dozen mappings go, and the child runs libc's code without
 *    faulting it in (2 or 3 faults fewer per child than with the split
 *    text; the pre-fork parent's fork took about 4% less time in a
 *    profile, within the noise of a timed run).
 */
#include "shim.h"
#include "thread.h"

#if defined(__x86_64__)
#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY
#endif
#include <Zydis/Zydis.h>
#include <libunwind.h>
#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char __libc_single_threaded; /* glibc >= 2.32: no thread ever created */

#define JMP_LEN 5     /* e9 rel32 */
#define TRAMP_MAX 48  /* copied instructions (rel32 forms at most 6 bytes each) + jmp back */
#define STUB_LEN 14   /* ff 25 00000000 + absolute address */

static void lock_wait(int *futex);
static void (*libc_lock_wait)(int *); /* __lll_lock_wait_private's trampoline (note H) */
static void lock_wake(int *futex);
static void (*libc_lock_wake)(int *); /* __lll_lock_wake_private's trampoline (note H) */

/* read, write, readv and writev lead to guards (note I), which call the
   shim's interposers through these. */
static ssize_t (*shim_read)(int, void *, size_t);
static ssize_t (*shim_write)(int, const void *, size_t);
static ssize_t (*shim_readv)(int, const struct iovec *, int);
static ssize_t (*shim_writev)(int, const struct iovec *, int);
static ssize_t (*libc_read_nocancel)(int, void *, size_t);       /* trampolines (note J) */
static ssize_t (*libc_write_nocancel)(int, const void *, size_t);
static ssize_t (*shim_read_nc)(int, void *, size_t);
static ssize_t (*shim_write_nc)(int, const void *, size_t);
static ssize_t read_nocancel_guard(int fd, void *buf, size_t len);
static ssize_t write_nocancel_guard(int fd, const void *buf, size_t len);
static ssize_t read_guard(int fd, void *buf, size_t len);
static ssize_t write_guard(int fd, const void *buf, size_t len);
static ssize_t readv_guard(int fd, const struct iovec *iov, int n);
static ssize_t writev_guard(int fd, const struct iovec *iov, int n);

/* One patched function: libc's name, the slot the shim reaches libc's code
   through, and where libc's entry now leads: the shim's interposer of the
   same name, or (to) a function of this file, which then reaches the
   interposer named shim_name (by default name) through *shim if it needs
   one. */
struct site {
  const char *name;
  void **real;
  void *to;
  void **shim;
  const char *shim_name;
};

#define SITE(n) {#n, (void **)&kz_real.n, NULL, NULL, NULL}
#define GUARDED(n) {#n, (void **)&kz_real.n, (void *)n##_guard, (void **)&shim_##n, NULL}
#define NOCANCEL(n) {"__" #n "_nocancel", (void **)&libc_##n##_nocancel, (void *)n##_nocancel_guard, (void **)&shim_##n##_nc, #n}
static const struct site sites[] = {
    {"__lll_lock_wait_private", (void **)&libc_lock_wait, (void *)lock_wait, NULL, NULL},
    {"__lll_lock_wake_private", (void **)&libc_lock_wake, (void *)lock_wake, NULL, NULL},
    NOCANCEL(read), NOCANCEL(write),
    GUARDED(read),  GUARDED(write), GUARDED(readv), GUARDED(writev), SITE(recv),
    SITE(send),     SITE(recvfrom), SITE(sendto),  SITE(recvmsg),  SITE(sendmsg),
    SITE(recvmmsg), SITE(sendmmsg), SITE(accept),  SITE(accept4),  SITE(connect),
    SITE(poll),     SITE(ppoll),    SITE(select),  SITE(pselect),  SITE(nanosleep),
    SITE(clock_nanosleep), SITE(socket),
};
#define NSITES (sizeof sites / sizeof *sites)

/* What is decided for one site before anything is written. */
struct plan {
  uint8_t *entry;         /* libc's function */
  size_t span;            /* bytes copied to the trampoline: whole instructions, >= JMP_LEN */
  void *to;               /* the shim's interposer */
  uint8_t tramp[TRAMP_MAX]; /* the trampoline, as written at tramp_at */
  size_t tramp_len;
  uint8_t *tramp_at;      /* its place in the trampoline page */
  uint8_t *stub_at;       /* the absolute-jump stub, if the interposer is far (note E) */
};

static bool fits32(intptr_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

static void put32(uint8_t *p, intptr_t v)
{
  int32_t w = (int32_t)v;
  memcpy(p, &w, 4);
}

static ZydisDecoder decoder; /* x86-64, set up once by kz_shim_patch_libc */

/* zydis, loaded for the patching and unloaded after it (note K). */
#define ZYDIS_FUNCS(X)                                                                     \
  X(ZydisDecoderInit) X(ZydisDecoderDecodeFull) X(ZydisDecoderDecodeInstruction)            \
  X(ZydisDecoderDecodeOperands) X(ZydisCalcAbsoluteAddress)                                 \
  X(ZydisEncoderDecodedInstructionToEncoderRequest) X(ZydisEncoderEncodeInstructionAbsolute)
static struct {
#define X(f) __typeof__(f) *f;
  ZYDIS_FUNCS(X)
#undef X
} zy;

/* Load zydis and fill zy: its handle, or NULL (nothing to patch with). */
static void *zydis_open(void)
{
  void *h = dlopen(KZ_ZYDIS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return NULL;
#define X(f)                                                                               \
  if (!(*(void **)&zy.f = dlsym(h, #f))) {                                                 \
    dlclose(h);                                                                            \
    return NULL;                                                                           \
  }
  ZYDIS_FUNCS(X)
#undef X
  return h;
}

/* One decoded instruction. */
struct insn {
  ZydisDecodedInstruction in;
  ZydisDecodedOperand op[ZYDIS_MAX_OPERAND_COUNT];
};

static bool decode(const uint8_t *code, size_t left, struct insn *x)
{
  return ZYAN_SUCCESS(zy.ZydisDecoderDecodeFull(&decoder, code, left, &x->in, x->op));
}

/* The same, with the operands only of branches (the scan of a whole
   function needs no more, and decoding operands is most of the cost);
   the others' operand count reads 0. */
static bool decode_for_scan(const uint8_t *code, size_t left, struct insn *x)
{
  ZydisDecoderContext ctx;
  ZyanU8 category;
  if (!ZYAN_SUCCESS(zy.ZydisDecoderDecodeInstruction(&decoder, &ctx, code, left, &x->in)))
    return false;
  category = x->in.meta.category;
  if (category != ZYDIS_CATEGORY_UNCOND_BR && category != ZYDIS_CATEGORY_COND_BR &&
      category != ZYDIS_CATEGORY_CALL) {
    x->in.operand_count_visible = 0;
    return true;
  }
  return ZYAN_SUCCESS(zy.ZydisDecoderDecodeOperands(&decoder, &ctx, &x->in, x->op, x->in.operand_count));
}

/* The target of a relative branch (jmp, jcc, call, loop...) decoded at
   address at, or 0 if x is not one. */
static uint64_t rel_target(const struct insn *x, uint64_t at)
{
  ZyanU64 t;
  if (x->in.operand_count_visible < 1 || x->op[0].type != ZYDIS_OPERAND_TYPE_IMMEDIATE ||
      !x->op[0].imm.is_relative || !ZYAN_SUCCESS(zy.ZydisCalcAbsoluteAddress(&x->in, &x->op[0], at, &t)))
    return 0;
  return t;
}

static bool is_jump(const struct insn *x)
{
  return x->in.meta.category == ZYDIS_CATEGORY_UNCOND_BR || x->in.meta.category == ZYDIS_CATEGORY_COND_BR;
}

/* Copy instruction x (decoded at its libc address from) to out, to run at
   address at; returns the bytes written (at most room), or 0 with *why
   set (note B). */
static size_t relocate(const struct insn *x, const uint8_t *from, uint8_t *out, size_t room, uint64_t at,
                       const char **why)
{
  uint64_t target = rel_target(x, (uintptr_t)from);
  ZydisMnemonic m = x->in.mnemonic;
  /* A syscall runs anywhere (the kernel returns to the next instruction,
     and a restart goes back two bytes, to the copy); calls, returns and
     interrupts are refused. */
  if (x->in.meta.category == ZYDIS_CATEGORY_CALL || x->in.meta.category == ZYDIS_CATEGORY_RET ||
      x->in.meta.category == ZYDIS_CATEGORY_SYSTEM || x->in.meta.category == ZYDIS_CATEGORY_INTERRUPT)
    return *why = "a call, return or interrupt in its first bytes", 0;
  if (m == ZYDIS_MNEMONIC_JRCXZ || m == ZYDIS_MNEMONIC_JECXZ || m == ZYDIS_MNEMONIC_LOOP ||
      m == ZYDIS_MNEMONIC_LOOPE || m == ZYDIS_MNEMONIC_LOOPNE)
    return *why = "a loop or jrcxz in its first bytes", 0;
  if (is_jump(x) && !target)
    return *why = "an indirect jump in its first bytes", 0;
  if (target) { /* jmp or jcc: re-encoded by zydis for its new place, same target */
    ZydisEncoderRequest req;
    ZyanUSize len = room;
    if (!ZYAN_SUCCESS(zy.ZydisEncoderDecodedInstructionToEncoderRequest(&x->in, x->op,
                                                                     x->in.operand_count_visible, &req)))
      return *why = "a jump zydis cannot encode", 0;
    req.branch_type = ZYDIS_BRANCH_TYPE_NONE;
    req.branch_width = ZYDIS_BRANCH_WIDTH_NONE;
    req.operands[0].imm.u = target;
    if (!ZYAN_SUCCESS(zy.ZydisEncoderEncodeInstructionAbsolute(&req, out, &len, at)))
      return *why = "a jump out of reach", 0;
    return len;
  }
  if (x->in.length > room)
    return *why = "instructions too long", 0;
  memcpy(out, from, x->in.length);
  for (int i = 0; i < x->in.operand_count_visible; i++) {
    const ZydisDecodedOperand *op = &x->op[i];
    if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.base == ZYDIS_REGISTER_RIP) {
      intptr_t disp = (intptr_t)op->mem.disp.value + (intptr_t)((uintptr_t)from - at);
      if (x->in.raw.disp.size != 32 || !fits32(disp))
        return *why = "a RIP-relative operand out of reach", 0;
      put32(out + x->in.raw.disp.offset, disp);
    }
  }
  return x->in.length;
}

/* Decide how fn (size bytes of code) is patched: the copied span and the
   trampoline, to be placed at tramp_at.  NULL, or why not (note B). */
static const char *plan_site(struct plan *p, size_t size, uint8_t *tramp_at)
{
  struct insn x;
  size_t n = 0, off;
  const char *why = NULL;
  p->span = 0;
  /* The first instructions, up to JMP_LEN bytes, into the trampoline. */
  while (p->span < JMP_LEN) {
    size_t len;
    if (p->span >= size || !decode(p->entry + p->span, size - p->span, &x))
      return "its first instructions do not decode";
    len = relocate(&x, p->entry + p->span, p->tramp + n, TRAMP_MAX - JMP_LEN - n, (uintptr_t)tramp_at + n,
                   &why);
    if (!len)
      return why;
    n += len, p->span += x.in.length;
  }
  /* ...then a jump back to the first instruction not copied. */
  p->tramp[n] = 0xe9;
  put32(p->tramp + n + 1, (intptr_t)(p->entry + p->span - (tramp_at + n + JMP_LEN)));
  p->tramp_len = n + JMP_LEN;
  p->tramp_at = tramp_at;
  /* The whole function: nothing may branch into the copied span. */
  for (off = 0; off < size; off += x.in.length) {
    uint64_t t;
    if (!decode_for_scan(p->entry + off, size - off, &x))
      return "its code does not decode to the end";
    t = rel_target(&x, (uintptr_t)p->entry + off);
    if (t > (uintptr_t)p->entry && t < (uintptr_t)p->entry + p->span)
      return "a branch into its first instructions";
    if (!t && is_jump(&x))
      return "an indirect jump";
  }
  return NULL;
}

/* ---- libc's internal locks (note H) ---------------------------------------- */

/* Executable ranges of the objects whose calls into libc must never park
   (note H): libc itself first, then the runtime (this library, libkudzu,
   libev).  Filled before patching.  The dynamic loader counts as libc:
   its malloc and free (a green thread's TLS area, made and freed by the
   runtime through _dl_allocate_tls) are its caller's, whoever called it;
   taken for the program's, they parked a green thread in the middle of a
   spawn or of the scheduler's release of a finished thread, and a fork
   in a busy program then waited for an arena for good (fork_alloc on two
   hubs). */
struct text {
  uintptr_t lo, hi;
};
static struct text libc_text, ldso_text, runtime_text[3];

/* The executable segment of the object holding addr (empty if none). */
static struct text text_of(const void *addr)
{
  struct text t = {0, 0};
  struct link_map *lm;
  Dl_info info;
  if (!addr || !dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
    return t;
  const ElfW(Ehdr) *eh = info.dli_fbase;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
      uintptr_t lo = lm->l_addr + ph[i].p_vaddr;
      if ((uintptr_t)addr >= lo && (uintptr_t)addr < lo + ph[i].p_memsz)
        t.lo = lo, t.hi = lo + ph[i].p_memsz;
    }
  return t;
}

static bool in_text(const struct text *t, uintptr_t ip) { return ip >= t->lo && ip < t->hi; }

/* The walk of called_by_runtime. */
static __attribute__((noinline)) bool walk_finds_runtime(void)
{
  unw_context_t ctx;
  unw_cursor_t cur;
  unw_word_t ip = 0;
  bool seen_libc = false;
  if (unw_getcontext(&ctx) != 0 || unw_init_local(&cur, &ctx) != 0)
    return true;
  for (int i = 0; i < 16 && unw_step(&cur) > 0; i++) {
    if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0)
      return true;
    if (in_text(&libc_text, ip) || in_text(&ldso_text, ip)) {
      seen_libc = true;
      continue;
    }
    if (!seen_libc)
      continue; /* this library's frames: lock_wait and its callers here */
    for (int k = 0; k < 3; k++)
      if (in_text(&runtime_text[k], ip))
        return true;
    return false;
  }
  return true;
}

/* Did the runtime, rather than the program, call the libc function that
   waits for a lock?  The first frame outside libc above this library's
   own frames tells; true (wait in the kernel, as before) if the stack
   cannot be read.  The walk is the runtime's own (hub/sched.c, note H):
   libunwind's calls into libc (its pipe, its mutex, malloc) reach libc
   itself, never the interposers, so the walk never parks here, where the
   caller may be half-way through a change (libev growing an array), nor
   comes back to this wait through an allocation of the shim's. */
static bool called_by_runtime(void)
{
  int err = errno; /* the walk leaves errno behind (libunwind checks addresses with system calls): EAGAIN after a pthread_create */
  struct kz_green *hidden = kz__runtime_enter();
  bool r = walk_finds_runtime();
  kz__runtime_leave(hidden);
  errno = err;
  return r;
}

/* Wait for libc's lock *futex in green thread g: take it the way glibc
   does (exchange with 2, "locked, maybe waiters"), parking in the shim's
   wait table under the lock's address instead of sleeping in the kernel,
   so the hub runs on; the holder may be a green thread of this hub, parked
   inside libc.  The holder's unlock sees 2 and calls
   __lll_lock_wake_private, which leads to lock_wake: libc's futex wake,
   then the table's.  The exchange is made once queued (kz_sync_wait's
   check), so an unlock between the last try and the park is never missed.
   A brief spin first: a holder on another OS thread usually lets go within
   microseconds.  No cancellation and no deadline: a lock wait has neither,
   natively.  If libc's wake could not be patched, nothing would wake the
   table: then the lock is retried between short parks instead. */
static int lock_try(void *futex) { return __atomic_exchange_n((int *)futex, 2, __ATOMIC_ACQUIRE) == 0; }

static void green_lock_wait(struct kz_green *g, int *futex)
{
  struct kz__shield s;
  double pause = 50e-6;
  for (int i = 0; i < 100; i++) {
    if (__atomic_load_n(futex, __ATOMIC_RELAXED) == 0 && __atomic_exchange_n(futex, 2, __ATOMIC_ACQUIRE) == 0)
      return;
    __builtin_ia32_pause();
  }
  if (libc_lock_wake) {
    while (kz_sync_wait(futex, lock_try, futex, -1, 0, true, "a lock inside libc") != 0)
      if (lock_try(futex))
        return;
    return;
  }
  kz__shield_up(g, &s);
  while (__atomic_exchange_n(futex, 2, __ATOMIC_ACQUIRE) != 0) {
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a lock inside libc"};
    kz__park(kz__now() + pause);
    pause = pause < 1e-3 ? pause * 2 : 1e-3;
  }
  kz__shield_down(g, &s);
}

/* Where __lll_lock_wait_private now leads: libc's own wait outside green
   threads (and in signal handlers, inside fork's own locking, before
   start-up, and when the runtime made the call), the green wait in them. */
KZ_TLS bool kz_shim_forking;

static void lock_wait(int *futex)
{
  struct kz__hub *h = kz__tls_hub;
  if (KZ_LIKELY(h == NULL) || h->current == NULL || KZ_UNLIKELY(kz_shim_in_handler) ||
      KZ_UNLIKELY(kz_shim_forking) || !kz_shim.ready || called_by_runtime())
    libc_lock_wait(futex);
  else
    green_lock_wait(h->current, futex);
}

/* Where __lll_lock_wake_private now leads, from every thread (an unlock of
   a contended lock): libc's wake of the kernel's waiters, then one of the
   green threads waiting in the table (one atomic load when none waits
   anywhere).  Waking one of each is harmless: a waiter that finds the lock
   taken again queues again. */
static void lock_wake(int *futex)
{
  libc_lock_wake(futex);
  kz_sync_wake(futex, 1);
}

/* ---- The standard streams while their holder parks (note I) ----------------- */

/* glibc's stream lock, _IO_lock_t (nptl's stdio-lock.h), which <stdio.h>
   leaves opaque: the futex word, the recursion count, the owner's TCB. */
struct io_lock {
  int lock;
  int cnt;
  void *owner;
};

/* The standard streams a green thread handed over while it may park. */
struct hidden {
  FILE *f[3];
};

static inline void *thread_self(void) /* THREAD_SELF: the TCB's self pointer */
{
  void *self;
  __asm__("mov %%fs:0x10, %0" : "=r"(self));
  return self;
}

/* Before a call that may park green thread g inside libc: each of stdin,
   stdout and stderr whose lock this OS thread holds (so g holds it: every
   other green thread of the hub that holds one handed it over when it
   parked) gets g as its owner, so that another green thread of the hub
   waits for the lock (lock_wait) instead of entering the stream. */
static void hide(struct kz_green *g, struct hidden *h)
{
  FILE *std[3] = {stdin, stdout, stderr};
  void *self = thread_self();
  for (int i = 0; i < 3; i++) {
    struct io_lock *l = std[i] ? (struct io_lock *)std[i]->_lock : NULL;
    h->f[i] = NULL;
    if (l && l->owner == self && l->cnt > 0) {
      l->owner = g;
      h->f[i] = std[i];
    }
  }
}

/* After the call: the streams are this OS thread's again. */
static void show(const struct hidden *h)
{
  void *self = thread_self();
  for (int i = 0; i < 3; i++)
    if (h->f[i])
      ((struct io_lock *)h->f[i]->_lock)->owner = self;
}

/* A guard: outside green threads (and in signal handlers, whose calls pass
   through) straight to the interposer, a tail call; in one, the standard
   streams handed over around it. */
#define GUARD(name, params, args)                                  \
  static ssize_t name##_guard params                               \
  {                                                                \
    struct kz__hub *hub = kz__tls_hub;                             \
    struct hidden h;                                               \
    ssize_t r;                                                     \
    if (KZ_LIKELY(hub == NULL) || hub->current == NULL ||          \
        KZ_UNLIKELY(kz_shim_in_handler))                           \
      return shim_##name args;                                     \
    hide(hub->current, &h);                                        \
    r = shim_##name args;                                          \
    show(&h);                                                      \
    return r;                                                      \
  }
GUARD(read, (int fd, void *buf, size_t len), (fd, buf, len))
GUARD(write, (int fd, const void *buf, size_t len), (fd, buf, len))
GUARD(readv, (int fd, const struct iovec *iov, int n), (fd, iov, n))
GUARD(writev, (int fd, const struct iovec *iov, int n), (fd, iov, n))

/* The _nocancel forms (note J): outside green threads libc's own code; in
   one the interposer, shielded: no cancellation point, no deadline. */
#define GUARD_NOCANCEL(name, params, args)                         \
  static ssize_t name##_nocancel_guard params                      \
  {                                                                \
    struct kz__hub *hub = kz__tls_hub;                             \
    struct kz__shield shield;                                      \
    struct kz_green *g;                                            \
    struct hidden h;                                               \
    ssize_t r;                                                     \
    if (KZ_LIKELY(hub == NULL) || (g = hub->current) == NULL ||    \
        KZ_UNLIKELY(kz_shim_in_handler))                           \
      return libc_##name##_nocancel args;                          \
    kz__shield_up(g, &shield);                                     \
    hide(g, &h);                                                   \
    r = shim_##name##_nc args;                                     \
    show(&h);                                                      \
    kz__shield_down(g, &shield);                                   \
    return r;                                                      \
  }
GUARD_NOCANCEL(read, (int fd, void *buf, size_t len), (fd, buf, len))
GUARD_NOCANCEL(write, (int fd, const void *buf, size_t len), (fd, buf, len))

/* One page within rel32 reach of [lo, hi), for the trampolines (note E). */
static uint8_t *page_near(uintptr_t lo, uintptr_t hi)
{
  long pg = sysconf(_SC_PAGESIZE);
  for (uintptr_t step = 1 << 20; step < (1ul << 30); step <<= 1) {
    uintptr_t hints[2] = {(lo & ~(uintptr_t)(pg - 1)) - step, ((hi + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1)) + step};
    for (int i = 0; i < 2; i++) {
      void *m = mmap((void *)hints[i], (size_t)pg, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (m == MAP_FAILED)
        continue;
      if (fits32((intptr_t)((uintptr_t)m - lo)) && fits32((intptr_t)(hi - (uintptr_t)m)))
        return m;
      munmap(m, (size_t)pg);
    }
  }
  return NULL;
}

/* Make the pages holding [lo, hi) of libc's text writable (and still
   executable: libc's own mprotect may be on one of them), or read-execute
   again (note D). */
static int text_access(uintptr_t lo, uintptr_t hi, bool writable)
{
  uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
  void *start = (void *)(lo & ~(pg - 1));
  size_t len = ((hi + pg - 1) & ~(pg - 1)) - (uintptr_t)start;
  return mprotect(start, len, PROT_READ | PROT_EXEC | (writable ? PROT_WRITE : 0));
}

/* Write the jump at p's entry (note C): one 8-byte store when the span
   lies in one aligned word, as it does in glibc 2.36. */
static void write_jump(const struct plan *p)
{
  uint8_t *target = p->stub_at ? p->stub_at : p->to;
  uint8_t jmp[16];
  uintptr_t e = (uintptr_t)p->entry;
  memset(jmp, 0xcc, sizeof jmp); /* int3 fills the rest of the copied span */
  jmp[0] = 0xe9;
  put32(jmp + 1, (intptr_t)(target - (p->entry + JMP_LEN)));
  if ((e & 7) + p->span <= 8) {
    uint64_t *word = (uint64_t *)(e & ~(uintptr_t)7), v = *word;
    memcpy((uint8_t *)&v + (e & 7), jmp, p->span);
    __atomic_store_n(word, v, __ATOMIC_RELEASE);
  } else {
    memcpy(p->entry, jmp, p->span);
  }
}

/* The size of each of libc's functions at entry[0..n) from libc's dynamic
   symbol table, 0 if not found: one pass over the table (DT_HASH gives its
   length), where dladdr1 searches it once per function (the way taken
   without DT_HASH). */
static void sizes_of(void *libc, uint8_t *const *entry, size_t *size, size_t n)
{
  struct link_map *lm;
  const ElfW(Sym) *symtab = NULL;
  const ElfW(Word) *hash = NULL;
  memset(size, 0, n * sizeof *size);
  if (dlinfo(libc, RTLD_DI_LINKMAP, &lm) != 0)
    return;
  for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++) {
    /* glibc relocates these entries in place; a raw offset is below l_addr */
    uintptr_t a = d->d_un.d_ptr < lm->l_addr ? lm->l_addr + d->d_un.d_ptr : d->d_un.d_ptr;
    if (d->d_tag == DT_SYMTAB)
      symtab = (const ElfW(Sym) *)a;
    else if (d->d_tag == DT_HASH)
      hash = (const ElfW(Word) *)a;
  }
  if (!symtab || !hash) {
    for (size_t k = 0; k < n; k++) {
      const ElfW(Sym) *sym = NULL;
      Dl_info info;
      if (entry[k] && dladdr1(entry[k], &info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
          info.dli_saddr == entry[k])
        size[k] = sym->st_size;
    }
    return;
  }
  for (ElfW(Word) i = 0; i < hash[1]; i++) { /* hash[1]: nchain, the symbol count */
    const ElfW(Sym) *sym = &symtab[i];
    if (ELF64_ST_TYPE(sym->st_info) != STT_FUNC || sym->st_shndx == SHN_UNDEF)
      continue;
    for (size_t k = 0; k < n; k++)
      if (entry[k] == (uint8_t *)(lm->l_addr + sym->st_value) && sym->st_size > size[k])
        size[k] = sym->st_size;
  }
}

/* Gather the plans; every site that cannot be patched is named in why. */
static size_t plan_all(struct plan *plans, const struct site **of, uint8_t *page, long pagesz,
                       char *why, size_t whylen)
{
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD), *self;
  Dl_info me, info;
  uint8_t *entries[NSITES];
  size_t sizes[NSITES], n = 0, used = 0, wl = 0;
  if (!libc || !dladdr((void *)plan_all, &me) ||
      !(self = dlopen(me.dli_fname, RTLD_LAZY | RTLD_NOLOAD)))
    return 0;
  for (size_t i = 0; i < NSITES; i++)
    entries[i] = dlsym(libc, sites[i].name);
  sizes_of(libc, entries, sizes, NSITES);
  for (size_t i = 0; i < NSITES; i++) {
    struct plan *p = &plans[n];
    const char *no = NULL;
    memset(p, 0, sizeof *p);
    p->entry = entries[i];
    if (!p->entry)
      continue; /* not in this libc: nothing calls it */
    void *shim = sites[i].to && !sites[i].shim ? NULL
                 : dlsym(self, sites[i].shim_name ? sites[i].shim_name : sites[i].name);
    p->to = sites[i].to ? sites[i].to : shim;
    if (*sites[i].real && *sites[i].real != p->entry)
      no = "another library defines it first";
    else if ((p->to == shim || sites[i].shim) && (!shim || !dladdr(shim, &info) || info.dli_fbase != me.dli_fbase))
      no = "the shim's interposer is not found";
    else if (sizes[i] == 0)
      no = "its size is unknown";
    else if (used + TRAMP_MAX + STUB_LEN > (size_t)pagesz)
      no = "no room for its trampoline";
    else
      no = plan_site(p, sizes[i], page + used);
    if (no) {
      wl += (size_t)snprintf(why + wl, wl < whylen ? whylen - wl : 0, "%s%s (%s)", wl ? ", " : "",
                             sites[i].name, no);
      continue;
    }
    used += p->tramp_len;
    if (!fits32((intptr_t)((uint8_t *)p->to - (p->entry + JMP_LEN)))) { /* note E */
      p->stub_at = page + used;
      used += STUB_LEN;
    }
    if (sites[i].shim)
      *sites[i].shim = shim;
    of[n++] = &sites[i];
  }
  return n;
}

/* Place the trampolines and stubs in the page, then seal it (note D). */
static int fill_page(uint8_t *page, long pagesz, const struct plan *plans, size_t n)
{
  static const uint8_t jmp_abs[6] = {0xff, 0x25, 0, 0, 0, 0}; /* jmp *0(%rip) */
  for (size_t i = 0; i < n; i++) {
    memcpy(plans[i].tramp_at, plans[i].tramp, plans[i].tramp_len);
    if (plans[i].stub_at) {
      memcpy(plans[i].stub_at, jmp_abs, sizeof jmp_abs);
      memcpy(plans[i].stub_at + sizeof jmp_abs, &plans[i].to, sizeof plans[i].to);
    }
  }
  return mprotect(page, (size_t)pagesz, PROT_READ | PROT_EXEC);
}

/* Patch libc's functions' entries; returns how many were patched. */
static size_t patch(void)
{
  struct plan plans[NSITES];
  const struct site *of[NSITES];
  long pagesz = sysconf(_SC_PAGESIZE);
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  char why[512] = "";
  uint8_t *page;
  size_t n;
  /* Where libc's functions are: the page goes within reach of all of them. */
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  for (size_t i = 0; libc && i < NSITES; i++) {
    uintptr_t a = (uintptr_t)dlsym(libc, sites[i].name);
    if (a)
      lo = a < lo ? a : lo, hi = a > hi ? a : hi;
  }
  if (!hi || !(page = page_near(lo, hi + 4096))) {
    kz__say("libc's code not found where expected; its internal calls block the OS thread");
    return 0;
  }
  libc_text = text_of(libc ? dlsym(libc, "read") : NULL);
  ldso_text = text_of(dlvsym(RTLD_DEFAULT, "_dl_allocate_tls", "GLIBC_PRIVATE"));
  runtime_text[0] = text_of((void *)kz_shim_patch_libc);
  runtime_text[1] = text_of((void *)kz__now);
  runtime_text[2] = text_of(dlsym(RTLD_DEFAULT, "ev_run"));
  n = plan_all(plans, of, page, pagesz, why, sizeof why);
  if (*why) /* once, naming every function left as it is (note B) */
    kz__say("libc's %s: not patched; libc's own calls to them block the OS thread", why);
  if (n == 0 || fill_page(page, pagesz, plans, n) != 0) {
    munmap(page, (size_t)pagesz);
    return 0;
  }
  /* libc's whole executable segment writable at once, every jump, then
     read-execute again (note L); then the shim and libkudzu reach each
     function's original code through its trampoline. */
  lo = libc_text.hi ? libc_text.lo : UINTPTR_MAX, hi = libc_text.hi;
  for (size_t i = 0; i < n; i++) { /* the segment holds them all; if not found, the span */
    uintptr_t e = (uintptr_t)plans[i].entry;
    if (e < lo || e + plans[i].span > hi)
      lo = e < lo ? e : lo, hi = e + plans[i].span > hi ? e + plans[i].span : hi;
  }
  if (text_access(lo, hi, true) != 0) {
    kz__say("libc's code cannot be made writable (%s); its internal calls block the OS thread",
            strerror(errno));
    munmap(page, (size_t)pagesz);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    write_jump(&plans[i]);
  text_access(lo, hi, false);
  for (size_t i = 0; i < n; i++) {
    kz__os_divert(plans[i].entry, plans[i].tramp_at);
    *of[i]->real = plans[i].tramp_at;
  }
  return n;
}

void kz_shim_patch_libc(void)
{
  double t0;
  size_t n;
  void *zydis;
  if (!(kz_shim.patch & KZ_PATCH_LIBC)) {
    if (kz_shim.debug)
      kz__say("libc: not patched (family libc off)");
    return;
  }
  if (!__libc_single_threaded) { /* note C */
    kz__say("threads already run at start-up: libc's code left unpatched; "
            "its internal calls block the OS thread");
    return;
  }
  t0 = kz__now();
  if (!(zydis = zydis_open())) {
    kz__say("zydis (" KZ_ZYDIS_SONAME ") cannot be loaded: libc's code left unpatched; "
            "its internal calls block the OS thread");
    return;
  }
  if (!ZYAN_SUCCESS(zy.ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))) {
    kz__say("zydis cannot decode x86-64: libc's code left unpatched");
    dlclose(zydis);
    return;
  }
  n = patch();
  dlclose(zydis); /* note K */
  if (kz_shim.debug)
    kz__say("libc: %zu functions patched (%.0f us)", n, (kz__now() - t0) * 1e6);
}
#else
/* Other architectures: libc's code is left as it is. */
void kz_shim_patch_libc(void)
{
  if (kz_shim.debug)
    kz__say("libc: not patched (x86-64 only)");
}
#endif
