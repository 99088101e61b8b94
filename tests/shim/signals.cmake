# Signal tests (label "shim;signal"): plain programs from tests/helpers,
# built without kudzu, run natively and under the launcher (both must pass
# and print the same).  A failure may be a hang, in a process whose other
# threads block every signal: timeout kills the whole process group.
set(KUDZU_SIGNAL_HELPERS sig_raise sig_raise_spin sig_from_process sig_segv_resume sig_wait sig_timedwait sig_signalfd sig_suspend
    sig_mask_server sig_mask_kill sig_mask_eintr sig_mask_calls sig_new_thread)
set(_kz_helpers_dir ${PROJECT_SOURCE_DIR}/tests/helpers)
foreach(h ${KUDZU_SIGNAL_HELPERS})
  add_executable(${h} ${_kz_helpers_dir}/${h}.c)
  target_link_libraries(${h} PRIVATE Threads::Threads)
  set_target_properties(${h} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/helpers)
  target_compile_options(${h} PRIVATE -D_FORTIFY_SOURCE=2 -O2)
  add_test(NAME shim_${h} COMMAND ${KZ_TIMEOUT} -s KILL 60 ${CMAKE_CURRENT_SOURCE_DIR}/both.sh
           $<TARGET_FILE:kudzu-launcher> $<TARGET_FILE:${h}>)
  set_tests_properties(shim_${h} PROPERTIES LABELS "shim;signal" TIMEOUT 120)
endforeach()
# A new thread's mask where its hub's OS thread blocked everything before it
# came (hub/sigmask.c, note D): with two hubs and with four.
foreach(n 2 4)
  add_test(NAME shim_hubs${n}_sig_new_thread COMMAND ${KZ_TIMEOUT} -s KILL 60 ${CMAKE_CURRENT_SOURCE_DIR}/both.sh
           $<TARGET_FILE:kudzu-launcher> $<TARGET_FILE:sig_new_thread>)
  set_tests_properties(shim_hubs${n}_sig_new_thread PROPERTIES LABELS "shim;signal;hubs" TIMEOUT 120
                       ENVIRONMENT "KUDZU_HUBS=${n}")
endforeach()
# The signal waits, under the launcher: at most 3 OS threads while a
# thread waits and another ticks.
foreach(h sig_wait sig_timedwait sig_signalfd sig_suspend)
  add_test(NAME shim_${h}_os_threads COMMAND ${KZ_TIMEOUT} -s KILL 60 $<TARGET_FILE:kudzu-launcher>
           $<TARGET_FILE:${h}> 3)
  set_tests_properties(shim_${h}_os_threads PROPERTIES LABELS "shim;signal" TIMEOUT 120)
endforeach()
# The JVM, whose threads stay OS threads (preload/thread.c, note J); skipped
# without java.
add_test(NAME shim_java COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/java.sh)
set_tests_properties(shim_java PROPERTIES LABELS "shim;tools;thread" TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>")
# CPython's test_signal, the class of the signal waits; skipped without it.
add_test(NAME shim_python_signal COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/python_signal.sh)
set_tests_properties(shim_python_signal PROPERTIES LABELS "shim;tools;signal" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "KZ=$<TARGET_FILE:kudzu-launcher>")
