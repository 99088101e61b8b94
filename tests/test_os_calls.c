/* test_os_calls.c: libkudzu's own locks, once-controls, keys, condition
 * variables and worker threads never go through an interposer of the
 * pthread functions (hub/internal.h, "Reaching libc, not the shim").
 *
 * This executable defines the pthread functions that libkudzu-preload
 * interposes.  A definition in the executable comes first in the global
 * search order, exactly like an LD_PRELOAD object's, so every call libkudzu
 * makes to one of these names through its PLT, or through an address it
 * took of one, lands here.  Each one forwards to the next definition
 * (dlsym(RTLD_NEXT): the sanitizer's or libc's) and counts the calls whose
 * return address lies in libkudzu.so.  The tests drive the paths that take
 * the runtime's internal locks (hub creation and teardown, handle chunks,
 * stacks, worker pools, remote hubs) and expect no such call at all. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <kudzu.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Where libkudzu.so is mapped ----------------------------------------- */

static _Atomic uintptr_t kz_lo, kz_hi; /* [lo, hi), 0 until found */

static int find_range(struct dl_phdr_info *info, size_t size, void *base)
{
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  (void)size;
  if ((void *)info->dlpi_addr != base && !strstr(info->dlpi_name, "libkudzu.so"))
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD)
      continue;
    if (info->dlpi_addr + ph->p_vaddr < lo)
      lo = info->dlpi_addr + ph->p_vaddr;
    if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
      hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
  }
  atomic_store(&kz_lo, lo);
  atomic_store(&kz_hi, hi);
  return 1;
}

static bool from_kudzu(void *ret)
{
  uintptr_t a = (uintptr_t)ret;
  if (!atomic_load(&kz_hi)) {
    Dl_info info;
    if (dladdr((void *)kz_spawn, &info) && info.dli_fbase)
      dl_iterate_phdr(find_range, info.dli_fbase);
  }
  return a >= atomic_load(&kz_lo) && a < atomic_load(&kz_hi);
}

/* ---- The interposers ----------------------------------------------------- */

#define INTERPOSED(X)                                                                         \
  X(int, pthread_mutex_lock, (pthread_mutex_t * m), (m))                                      \
  X(int, pthread_mutex_unlock, (pthread_mutex_t * m), (m))                                    \
  X(int, pthread_cond_wait, (pthread_cond_t * c, pthread_mutex_t * m), (c, m))                \
  X(int, pthread_cond_timedwait,                                                              \
    (pthread_cond_t * c, pthread_mutex_t * m, const struct timespec *ts), (c, m, ts))         \
  X(int, pthread_cond_signal, (pthread_cond_t * c), (c))                                      \
  X(int, pthread_cond_broadcast, (pthread_cond_t * c), (c))                                   \
  X(int, pthread_create,                                                                      \
    (pthread_t * t, const pthread_attr_t *a, void *(*start)(void *), void *arg),              \
    (t, a, start, arg))                                                                       \
  X(int, pthread_join, (pthread_t t, void **r), (t, r))                                       \
  X(int, pthread_detach, (pthread_t t), (t))                                                  \
  X(int, pthread_once, (pthread_once_t * o, void (*init)(void)), (o, init))                   \
  X(int, pthread_key_create, (pthread_key_t * k, void (*d)(void *)), (k, d))                  \
  X(int, pthread_setspecific, (pthread_key_t k, const void *v), (k, v))                       \
  X(void *, pthread_getspecific, (pthread_key_t k), (k))

enum {
#define X(ret, name, params, args) FN_##name,
  INTERPOSED(X)
#undef X
      NFN
};

static const char *const fn_names[NFN] = {
#define X(ret, name, params, args) #name,
    INTERPOSED(X)
#undef X
};

static _Atomic unsigned long hits[NFN]; /* calls made from libkudzu.so */

/* Default visibility: the project builds with hidden symbols by default. */
#define X(ret, name, params, args)                                                  \
  __attribute__((visibility("default"))) ret name params                            \
  {                                                                                 \
    static ret(*_Atomic next) params;                                               \
    ret(*real_) params = atomic_load(&next);                                        \
    if (from_kudzu(__builtin_return_address(0)))                                    \
      atomic_fetch_add(&hits[FN_##name], 1);                                        \
    if (!real_) {                                                                   \
      real_ = (ret(*) params)dlsym(RTLD_NEXT, #name);                               \
      atomic_store(&next, real_);                                                   \
    }                                                                               \
    return real_ args;                                                              \
  }
INTERPOSED(X)
#undef X

static void assert_no_interposed_calls(void)
{
  for (int i = 0; i < NFN; i++)
    cr_expect_eq(atomic_load(&hits[i]), 0, "libkudzu called the interposed %s %lu times",
                 fn_names[i], atomic_load(&hits[i]));
}

/* ---- The paths ------------------------------------------------------------- */

static void *nothing(void *arg) { return arg; }

/* Enough green threads to need more than one chunk of handles (4,096 slots
   each): every new chunk is made under the handle table's lock. */
static void *spawn_many(void *arg)
{
  enum { N = 5000 };
  static kz_green_t ids[N];
  (void)arg;
  for (int i = 0; i < N; i++)
    cr_assert_neq(ids[i] = kz_spawn(nothing, (void *)(intptr_t)i), 0);
  for (int i = 0; i < N; i++) {
    void *r;
    cr_assert_eq(kz_join(ids[i], &r, KZ_FOREVER), 0);
    cr_assert_eq((intptr_t)r, i);
  }
  cr_assert_eq(kz_sleep(0.001), 0);
  return NULL;
}

Test(os_calls, hub_lifecycle_and_handles)
{
  /* hub creation: once, key, setspecific; stacks: once; teardown: setspecific */
  cr_assert_eq(kz_run(spawn_many, NULL, NULL), 0);
  cr_assert_eq(kz_run(spawn_many, NULL, NULL), 0);
  assert_no_interposed_calls();
}

static void *slow_double(void *arg)
{
  struct timespec ts = {0, 2 * 1000 * 1000};
  nanosleep(&ts, NULL);
  return (void *)((intptr_t)arg * 2);
}

static int release[2]; /* held_job's end */

static void *held_job(void *arg)
{
  char c;
  (void)arg;
  if (read(release[0], &c, 1) != 1) /* a worker thread: no hub, a plain read */
    abort();
  return NULL;
}

static void *submit_one(void *arg)
{
  void *r;
  cr_assert_eq(kz_run_in_executor(NULL, slow_double, arg, NULL, &r, KZ_FOREVER), 0);
  return r;
}

static void *use_pools(void *arg)
{
  struct kz_executor *ex = kz_executor_new(2);
  kz_green_t ids[8];
  (void)arg;
  cr_assert_not_null(ex);
  for (int i = 0; i < 4; i++) {
    void *r;
    cr_assert_eq(kz_run_in_executor(NULL, slow_double, (void *)(intptr_t)i, NULL, &r, KZ_FOREVER), 0);
    cr_assert_eq((intptr_t)r, 2 * i);
    cr_assert_eq(kz_run_in_executor(ex, slow_double, (void *)(intptr_t)i, NULL, &r, KZ_FOREVER), 0);
    cr_assert_eq((intptr_t)r, 2 * i);
  }
  /* a timed-out call abandons its job: the worker keeps it (the job waits
     for the release below, so it cannot end before the timeout) */
  cr_assert_eq(pipe(release), 0);
  cr_assert_eq(kz_run_in_executor(ex, held_job, NULL, NULL, NULL, 0.0001), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(write(release[1], "x", 1), 1);
  for (int i = 0; i < 8; i++) /* concurrent submissions start more workers */
    ids[i] = kz_spawn(submit_one, (void *)(intptr_t)i);
  for (int i = 0; i < 8; i++)
    kz_join(ids[i], NULL, KZ_FOREVER);
  cr_assert_eq(kz_executor_free(ex), 0); /* broadcast, join */
  return NULL;
}

Test(os_calls, worker_pools)
{
  cr_assert_eq(kz_run(use_pools, NULL, NULL), 0);
  assert_no_interposed_calls();
}

static void *remote_fn(void *arg) { return arg; }

static void *use_remote(void *arg)
{
  struct kz_remote *r = kz_remote_start();
  void *res = NULL;
  kz_future_t f;
  (void)arg;
  cr_assert_not_null(r);
  cr_assert_neq(f = kz_remote_spawn(r, remote_fn, (void *)7), 0);
  cr_assert_eq(kz_future_wait(f, &res, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)res, 7);
  kz_future_free(f);
  cr_assert_eq(kz_remote_stop(r), 0);
  kz_remote_free(r);
  return NULL;
}

Test(os_calls, remote_hub)
{
  cr_assert_eq(kz_run(use_remote, NULL, NULL), 0);
  assert_no_interposed_calls();
}
