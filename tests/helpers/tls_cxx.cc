// tls_cxx.cc: C++ thread_local objects are each thread's own and are
// destroyed when their thread exits, in that thread.  Four threads construct
// a thread_local object holding their number and a thread_local string,
// block (a sleep, a condition wait), check both, and exit; each object's
// destructor records its number once, before the thread is joined.  The
// exception being handled is each thread's own too (libstdc++ keeps it in
// thread-local storage): each thread blocks inside a catch block while the
// others throw and catch, and still finds its own.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define CHECK(c)                                                       \
  do {                                                                 \
    if (!(c)) {                                                        \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      std::exit(1);                                                    \
    }                                                                  \
  } while (0)

constexpr int N = 4;
static std::atomic<int> destroyed[N];
static std::atomic<int> constructed;

struct Mine {
  int number = -1;
  Mine() { constructed++; }
  ~Mine()
  {
    CHECK(number >= 0 && number < N);
    destroyed[number]++;
  }
};

static thread_local Mine mine;
static thread_local std::string name = "unnamed";
static std::mutex m;
static std::condition_variable cv;
static int arrived;

static void run(int i)
{
  CHECK(mine.number == -1 && name == "unnamed");
  mine.number = i;
  name = "thread " + std::to_string(i) + std::string(40, '.'); // on the heap
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(mine.number == i && name.compare(0, 8, "thread " + std::to_string(i)) == 0);
  try {
    throw std::runtime_error("thrown by " + std::to_string(i));
  } catch (const std::exception &e) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2)); // the others throw meanwhile
    try {
      std::rethrow_exception(std::current_exception());
    } catch (const std::exception &again) {
      CHECK(&again == &e && std::string(again.what()) == "thrown by " + std::to_string(i));
    }
  }
  {
    std::unique_lock<std::mutex> l(m);
    arrived++;
    cv.notify_all();
    cv.wait(l, [] { return arrived == N; });
  }
  CHECK(mine.number == i && name.compare(0, 8, "thread " + std::to_string(i)) == 0);
}

int main()
{
  std::vector<std::thread> ts;
  for (int i = 0; i < N; i++)
    ts.emplace_back(run, i);
  for (auto &t : ts)
    t.join();
  CHECK(constructed == N);
  for (int i = 0; i < N; i++)
    CHECK(destroyed[i] == 1);
  std::puts("each thread's thread_local objects were its own, destroyed at its exit");
  return 0;
}
