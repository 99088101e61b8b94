# Thread family tests (label "shim"): plain pthread programs from
# tests/helpers, built without kudzu, run natively and under the launcher
# (both must pass and print the same), plus the threaded server's OS-thread
# bound under the launcher.
set(KUDZU_THREAD_HELPERS thread_basic thread_exit_main thread_mutex thread_cond thread_sync
    thread_cancel thread_server thread_real thread_tid errno_sync pshared_sync
    tls_vars tls_epoll tls_errno tls_dtors tls_file_lock tls_robust thread_preempt fork_alloc
    arena_trim thread_burst thread_names thread_join_wait thread_churn)
set(_kz_helpers_dir ${PROJECT_SOURCE_DIR}/tests/helpers)
foreach(h ${KUDZU_THREAD_HELPERS})
  if(NOT TARGET ${h})
    add_executable(${h} ${_kz_helpers_dir}/${h}.c)
    target_link_libraries(${h} PRIVATE Threads::Threads)
    set_target_properties(${h} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
    target_compile_options(${h} PRIVATE -D_FORTIFY_SOURCE=2 -O2)
  endif()
  add_test(NAME shim_${h} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
           $<TARGET_FILE:${h}>)
  set_tests_properties(shim_${h} PROPERTIES LABELS "shim;thread" TIMEOUT 120)
endforeach()
# Thread-local storage (hub/tls.c): tls_* above; a module loaded with
# dlopen; C++ thread_local objects with destructors.
add_library(tls_module MODULE ${_kz_helpers_dir}/tls_module.c)
set_target_properties(tls_module PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
add_executable(tls_dlopen ${_kz_helpers_dir}/tls_dlopen.c)
target_link_libraries(tls_dlopen PRIVATE Threads::Threads ${CMAKE_DL_LIBS})
set_target_properties(tls_dlopen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
add_test(NAME shim_tls_dlopen COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:tls_dlopen> $<TARGET_FILE:tls_module>)
set_tests_properties(shim_tls_dlopen PROPERTIES LABELS "shim;thread" TIMEOUT 60)
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  add_executable(tls_cxx ${_kz_helpers_dir}/tls_cxx.cc)
  target_link_libraries(tls_cxx PRIVATE Threads::Threads)
  set_target_properties(tls_cxx PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
  add_test(NAME shim_tls_cxx COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
           $<TARGET_FILE:tls_cxx>)
  set_tests_properties(shim_tls_cxx PROPERTIES LABELS "shim;thread" TIMEOUT 60)
endif()
# Where green threads cannot have TLS of their own, a program with TLS of
# its own keeps OS threads (preload/thread.c, note L).
add_test(NAME shim_tls_safety_net COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tls_safety_net.sh)
set_tests_properties(shim_tls_safety_net PROPERTIES LABELS "shim;thread" TIMEOUT 60
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>;TLS_VARS=$<TARGET_FILE:tls_vars>")
# At most 3 OS threads with 200 connections and 400 threads open.
add_test(NAME shim_thread_server_os_threads
         COMMAND $<TARGET_FILE:kudzu-launcher> $<TARGET_FILE:thread_server> 3)
# With more hubs than cores too: spawns handed to other hubs without a
# wait (thread_burst: hub/green.c, note E), and threads made on one hub
# and released on another giving their handle slots back, so that memory
# does not grow with their number (thread_churn: hub/handle.c, note D).
foreach(n 2 4)
  foreach(h thread_burst thread_churn)
    add_test(NAME shim_hubs${n}_${h} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh
             $<TARGET_FILE:kudzu-launcher> $<TARGET_FILE:${h}>)
    set_tests_properties(shim_hubs${n}_${h} PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 120
                         ENVIRONMENT "KUDZU_HUBS=${n}")
  endforeach()
endforeach()
# Torture mode: every interposed call yields first.
add_test(NAME shim_torture_thread_cond
         COMMAND $<TARGET_FILE:kudzu-launcher> --torture $<TARGET_FILE:thread_cond>)
set_tests_properties(shim_thread_server_os_threads shim_torture_thread_cond
  PROPERTIES LABELS "shim;thread" TIMEOUT 120)

# The runtime's own threads and records: plain helpers built without kudzu
# (dns_worker_real, fork_resolve, thread_exit_worker) and helpers on the API
# (exit_api_worker, thread_api_release).  Several fail by hanging, in a
# process whose remaining threads block every signal: timeout kills the
# whole process group.
find_program(KZ_TIMEOUT timeout REQUIRED)
foreach(h dns_worker_real fork_resolve thread_exit_worker exit_api_worker thread_api_release)
  if(NOT TARGET ${h})
    add_executable(${h} ${_kz_helpers_dir}/${h}.c)
    target_link_libraries(${h} PRIVATE Threads::Threads)
    set_target_properties(${h} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
  endif()
endforeach()
target_link_libraries(exit_api_worker PRIVATE kudzu)
target_link_libraries(thread_api_release PRIVATE kudzu)
# libkudzu starts the worker pool's threads with libc's pthread_create, not
# the shim's: a lookup under the launcher leaves a second OS thread.
add_test(NAME shim_dns_worker_real COMMAND $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:dns_worker_real> kudzu)
# A forked child has none of its parent's workers and starts its own
# (hub/worker.c, note H).  A failure is a hang.
add_test(NAME shim_fork_resolve COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:fork_resolve>)
add_test(NAME shim_fork_resolve_no_threads COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:fork_resolve>)
# Every way a green pthread is released frees its shim record once.  On one
# hub: the helper lets the threads it started end by yielding (settle), and
# checks at once that a released id is unknown; a thread released by its own
# hub after a kz_join from another is so a moment after the join returns.
add_test(NAME shim_thread_api_release COMMAND $<TARGET_FILE:kudzu-launcher> --hubs 1
         $<TARGET_FILE:thread_api_release>)
# pthread_exit / kz_exit from main while the worker pool has idle threads:
# the process still ends when its last own thread does (hub/worker.c, note
# G), with the thread family patched or not.
add_test(NAME shim_thread_exit_worker COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:thread_exit_worker>)
add_test(NAME shim_thread_exit_worker_no_threads COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:thread_exit_worker>)
set_tests_properties(shim_thread_exit_worker_no_threads shim_fork_resolve_no_threads PROPERTIES ENVIRONMENT
                     "KUDZU_PATCH=all,-thread")
add_test(NAME shim_exit_api_worker COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:exit_api_worker>)
set_tests_properties(shim_dns_worker_real shim_fork_resolve shim_fork_resolve_no_threads
  shim_thread_api_release
  shim_thread_exit_worker shim_thread_exit_worker_no_threads shim_exit_api_worker
  PROPERTIES LABELS "shim;thread" TIMEOUT 120)

# Process-shared objects between processes (preload/pthread_sync.c, note D):
# a two-process ping-pong through two process-shared semaphores, each
# process with one thread (it waits in the kernel) and with other threads
# on its hub (a worker waits): 5,000 round trips take under a second
# (30 s when each wait was re-checked every 10 ms); a pre-fork server with
# 50 clients.  A lost wake-up is a hang: timeout kills the process group.
foreach(h pshared_pingpong prefork_server prefork_client fork_cost)
  if(NOT TARGET ${h})
    add_executable(${h} ${_kz_helpers_dir}/${h}.c)
    target_link_libraries(${h} PRIVATE Threads::Threads)
    set_target_properties(${h} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
  endif()
endforeach()
add_test(NAME shim_pshared_pingpong COMMAND ${KZ_TIMEOUT} -s KILL 30
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:pshared_pingpong> 5000 0)
add_test(NAME shim_pshared_pingpong_busy COMMAND ${KZ_TIMEOUT} -s KILL 30
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:pshared_pingpong> 5000 3)
add_test(NAME shim_prefork COMMAND ${KZ_TIMEOUT} -s KILL 100 ${CMAKE_CURRENT_SOURCE_DIR}/prefork.sh 2 50)
# What each fork costs the child in page faults, natively and under the
# launcher (fork_cost.sh says why counts).
add_test(NAME shim_prefork_fork_cost COMMAND ${KZ_TIMEOUT} -s KILL 60 ${CMAKE_CURRENT_SOURCE_DIR}/fork_cost.sh)
# A lone green thread waiting in the kernel is its hub waiting, not a blocked
# hub: the monitor (50 ms) says nothing, so the outputs agree.
add_test(NAME shim_pshared_sync_monitor COMMAND ${KZ_TIMEOUT} -s KILL 60
         ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:pshared_sync>)
set_tests_properties(shim_pshared_sync_monitor PROPERTIES LABELS "shim;thread" TIMEOUT 120
  ENVIRONMENT "KUDZU_MONITOR=0.05")
set_tests_properties(shim_pshared_pingpong shim_pshared_pingpong_busy shim_prefork shim_prefork_fork_cost PROPERTIES
  LABELS "shim;thread" TIMEOUT 120
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>;HELPERS=${PROJECT_BINARY_DIR}/tests/helpers")
# Several hubs (hub/hubs.c): the thread helpers again, their threads
# spread over two hubs (KUDZU_HUBS=2; natively the variable means nothing),
# and where the threads of a program run with --hubs N.
foreach(h thread_basic thread_exit_main thread_mutex thread_cond thread_sync thread_cancel
          thread_server thread_tid errno_sync tls_vars tls_errno tls_dtors thread_preempt fork_alloc
          arena_trim thread_join_wait)
  add_test(NAME shim_hubs2_${h} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
           $<TARGET_FILE:${h}>)
  set_tests_properties(shim_hubs2_${h} PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 120
                       ENVIRONMENT "KUDZU_HUBS=2")
endforeach()
# Joins that wait on the record (preload/thread.c, note O) with four hubs.
add_test(NAME shim_hubs4_thread_join_wait COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:thread_join_wait>)
set_tests_properties(shim_hubs4_thread_join_wait PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 120
                     ENVIRONMENT "KUDZU_HUBS=4")
add_test(NAME shim_hubs COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/hubs.sh)
set_tests_properties(shim_hubs PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 120
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>;HUBS_SPREAD=$<TARGET_FILE:hubs_spread>;THREAD_SERVER=$<TARGET_FILE:thread_server>")
# Idle hubs sleep in their loops: no CPU time while every thread waits.
add_test(NAME shim_hubs_idle COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/hubs_idle.sh)
set_tests_properties(shim_hubs_idle PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 60
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>")
# A hub handed to another OS thread while a thread blocks in a raw system
# call (hub/handoff.c): the other threads of its hub go on (one hub, so
# that they share it; each mode fails by alarm() when the hub waits).
add_executable(raw_block ${_kz_helpers_dir}/raw_block.c)
target_link_libraries(raw_block PRIVATE Threads::Threads)
set_target_properties(raw_block PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
foreach(m ppoll semop many self signal again fork main main_again main_signal main_many main_fork)
  add_test(NAME shim_handoff_${m} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
           $<TARGET_FILE:raw_block> ${m})
  set_tests_properties(shim_handoff_${m} PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 60
                       ENVIRONMENT "KUDZU_HUBS=1")
endforeach()
# Names on one hub, where every thread shares the main thread's OS thread.
add_test(NAME shim_hubs1_thread_names COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/both.sh $<TARGET_FILE:kudzu-launcher>
         $<TARGET_FILE:thread_names>)
set_tests_properties(shim_hubs1_thread_names PROPERTIES LABELS "shim;thread" TIMEOUT 60 ENVIRONMENT "KUDZU_HUBS=1")
add_test(NAME shim_handoff_bound COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/handoff.sh)
set_tests_properties(shim_handoff_bound PROPERTIES LABELS "shim;thread;hubs" TIMEOUT 60
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>;RAW_BLOCK=$<TARGET_FILE:raw_block>")
