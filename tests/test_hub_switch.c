/* test_hub_switch.c: what a context switch must preserve: callee-saved
 * registers, the floating-point control state, errno; FIFO order of ready
 * green threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fenv.h>
#include <kudzu.h>
#include <stdint.h>

/* Each green thread keeps its own values in every callee-saved register
   across yields; if a switch lost or mixed them, one of them sees another's. */
static void *hold_registers(void *arg)
{
  long base = (long)(intptr_t)arg;
  register long rbx asm("rbx") = base + 1;
  register long r12 asm("r12") = base + 2;
  register long r13 asm("r13") = base + 3;
  register long r14 asm("r14") = base + 4;
  register long r15 asm("r15") = base + 5;
  for (int i = 0; i < 100; i++) {
    asm volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    kz_yield();
    asm volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    if (rbx != base + 1 || r12 != base + 2 || r13 != base + 3 || r14 != base + 4 ||
        r15 != base + 5)
      return (void *)1;
  }
  return NULL;
}

Test(switch, preserves_callee_saved_registers)
{
  kz_green_t g[4];
  for (int i = 0; i < 4; i++)
    g[i] = kz_spawn(hold_registers, (void *)(intptr_t)(i * 1000));
  for (int i = 0; i < 4; i++) {
    void *r = (void *)-1;
    cr_assert_eq(kz_join(g[i], &r, KZ_FOREVER), 0);
    cr_assert_null(r, "green thread %d saw a register change across a switch", i);
  }
}

static void *rounding(void *arg)
{
  int mode = (int)(intptr_t)arg;
  volatile double one = 1.0, three = 3.0;
  fesetround(mode);
  for (int i = 0; i < 50; i++) {
    kz_yield();
    if (fegetround() != mode)
      return (void *)1;
  }
  /* The mode is really in force, not just reported. */
  double q = one / three;
  double up, down;
  fesetround(FE_UPWARD);
  up = one / three;
  fesetround(FE_DOWNWARD);
  down = one / three;
  fesetround(mode);
  if (mode == FE_UPWARD && q != up)
    return (void *)2;
  if (mode == FE_DOWNWARD && q != down)
    return (void *)3;
  return NULL;
}

Test(switch, preserves_floating_point_rounding_mode)
{
  kz_green_t up = kz_spawn(rounding, (void *)(intptr_t)FE_UPWARD);
  kz_green_t down = kz_spawn(rounding, (void *)(intptr_t)FE_DOWNWARD);
  kz_green_t near = kz_spawn(rounding, (void *)(intptr_t)FE_TONEAREST);
  void *r;
  cr_assert_eq(kz_join(up, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
  cr_assert_eq(kz_join(down, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
  cr_assert_eq(kz_join(near, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
  cr_assert_eq(fegetround(), FE_TONEAREST, "the main green thread kept its own mode");
}

static void *x87_control(void *arg)
{
  unsigned short want = (unsigned short)(uintptr_t)arg, cw;
  asm volatile("fldcw %0" ::"m"(want));
  for (int i = 0; i < 50; i++) {
    kz_yield();
    asm volatile("fnstcw %0" : "=m"(cw));
    if (cw != want)
      return (void *)1;
  }
  return NULL;
}

Test(switch, preserves_x87_control_word)
{
  unsigned short def;
  asm volatile("fnstcw %0" : "=m"(def));
  /* Rounding-control bits: the part of the control word every emulator
     (Valgrind included) models. */
  kz_green_t a = kz_spawn(x87_control, (void *)(uintptr_t)((def & ~0xc00) | 0x400)); /* down */
  kz_green_t b = kz_spawn(x87_control, (void *)(uintptr_t)(def | 0xc00));            /* to zero */
  void *r;
  cr_assert_eq(kz_join(a, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
  cr_assert_eq(kz_join(b, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
}

static void *report_mode(void *arg) { return (void *)(intptr_t)fegetround(); }

Test(switch, new_green_thread_inherits_spawner_rounding_mode)
{
  void *r;
  fesetround(FE_UPWARD);
  kz_green_t g = kz_spawn(report_mode, NULL);
  fesetround(FE_TONEAREST);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_eq((int)(intptr_t)r, FE_UPWARD);
}

static void *errno_keeper(void *arg)
{
  int mine = (int)(intptr_t)arg;
  errno = mine;
  for (int i = 0; i < 100; i++) {
    kz_yield();
    if (errno != mine)
      return (void *)1;
    errno = mine;
  }
  return NULL;
}

Test(switch, errno_belongs_to_each_green_thread)
{
  kz_green_t g[3];
  for (int i = 0; i < 3; i++)
    g[i] = kz_spawn(errno_keeper, (void *)(intptr_t)(1000 + i));
  errno = 77;
  for (int i = 0; i < 3; i++) {
    void *r;
    cr_assert_eq(kz_join(g[i], &r, KZ_FOREVER), 0);
    cr_assert_null(r);
  }
  cr_assert_eq(errno, 77, "the main green thread's errno survived");
}

static int order[8], norder;
static void *record(void *arg)
{
  order[norder++] = (int)(intptr_t)arg;
  kz_yield();
  order[norder++] = (int)(intptr_t)arg + 10;
  return NULL;
}

Test(switch, ready_green_threads_run_in_fifo_order)
{
  kz_green_t g[3];
  for (int i = 0; i < 3; i++)
    g[i] = kz_spawn(record, (void *)(intptr_t)i);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
  int want[] = {0, 1, 2, 10, 11, 12};
  cr_assert_eq(norder, 6);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(order[i], want[i], "position %d", i);
}

Test(switch, yield_outside_any_hub_is_harmless)
{
  cr_assert_eq(kz_yield(), 0);
}
