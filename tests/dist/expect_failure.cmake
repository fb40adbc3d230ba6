# cmake -DCMD="a|b|c" -DEXPECT=<regex> -DMAX_SECONDS=<n> -P expect_failure.cmake
# Runs CMD (arguments separated by |) and passes when it exits non-zero within MAX_SECONDS and its
# output (stdout + stderr) matches EXPECT: a failing rank must bring the whole job down, quickly,
# with a message that says what happened.
string(REPLACE "|" ";" cmd "${CMD}")
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")
set(all "${out}\n${err}")
message(STATUS "exit status: ${rc}, ${elapsed} s (limit ${MAX_SECONDS} s)")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job hung: still running after ${MAX_SECONDS} s\n${all}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited with status 0; a failing rank must make it fail\n${all}")
endif()
if(NOT all MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not match '${EXPECT}':\n${all}")
endif()
message(STATUS "ok: failed as expected with '${CMAKE_MATCH_0}'")
