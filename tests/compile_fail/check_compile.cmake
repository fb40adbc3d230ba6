# cmake -DCOMPILER=... -DFLAGS_FILE=... [-DEXTRA_FLAGS=...] -DSOURCE=... -DEXPECT=fail|pass [-DREGEX=...]
#       [-DFIRST_ERROR=ON] -P check_compile.cmake
# Compiles SOURCE with -fsyntax-only. EXPECT=fail: succeeds only if compilation fails and the output
# matches REGEX (with FIRST_ERROR: the first line containing "error:" matches REGEX, the line a user
# reads first). EXPECT=pass: succeeds only if compilation succeeds.
foreach(var COMPILER FLAGS_FILE SOURCE EXPECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_compile.cmake: -D${var}=... is required")
  endif()
endforeach()

execute_process(
  COMMAND ${COMPILER} ${EXTRA_FLAGS} @${FLAGS_FILE} -fsyntax-only -fdiagnostics-color=never ${SOURCE}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)

get_filename_component(case ${SOURCE} NAME)
if(EXPECT STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${case}: expected to compile, but the compiler failed (${rc}):\n${out}")
  endif()
  message(STATUS "${case}: compiles, as expected")
elseif(EXPECT STREQUAL "fail")
  if(rc EQUAL 0)
    message(FATAL_ERROR "${case}: expected a compile error matching '${REGEX}', but it compiled:\n${out}")
  endif()
  if(NOT out MATCHES "${REGEX}")
    message(FATAL_ERROR "${case}: failed to compile as expected, but no line matches '${REGEX}':\n${out}")
  endif()
  if(FIRST_ERROR)
    string(REGEX MATCH "[^\n]*error:[^\n]*" first "${out}")
    if(NOT first MATCHES "${REGEX}")
      message(FATAL_ERROR "${case}: the first error line does not match '${REGEX}':\n${first}\n\n${out}")
    endif()
  endif()
  string(REGEX MATCH "[^\n]*${REGEX}[^\n]*" line "${out}")
  message(STATUS "${case}: fails to compile as expected: ${line}")
else()
  message(FATAL_ERROR "check_compile.cmake: EXPECT must be 'fail' or 'pass', not '${EXPECT}'")
endif()
